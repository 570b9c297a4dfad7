/// Which of a pilot's GPUs each worker gets: every worker that declares GPUs is pinned to devices
/// of its own, so two workers never share one.
public struct GPUAssignment: Sendable, Equatable {
    /// The pilot's GPUs as Slurm gave them (`CUDA_VISIBLE_DEVICES` of the job), free ones in order.
    public private(set) var free: [String]
    public private(set) var taken: [String: [String]] = [:]

    public init(visibleDevices: String?) {
        free = (visibleDevices ?? "").split(separator: ",").map { String($0.filter { $0 != " " }) }.filter {
            !$0.isEmpty && $0 != "NoDevFiles"
        }
    }

    public var count: Int { free.count + taken.values.reduce(0) { $0 + $1.count } }

    /// Takes `n` free GPUs for `worker`; nil when fewer are free.
    public mutating func take(_ n: Int, for worker: String) -> [String]? {
        guard n > 0 else { return [] }
        guard free.count >= n else { return nil }
        let devices = Array(free.prefix(n))
        free.removeFirst(n)
        taken[worker] = devices
        return devices
    }

    /// Gives a worker's GPUs back.
    public mutating func release(_ worker: String) {
        guard let devices = taken.removeValue(forKey: worker) else { return }
        free = (free + devices).sorted { (Int($0) ?? 0, $0) < (Int($1) ?? 0, $1) }
    }

    /// The environment and device nodes that pin a worker to `devices`.
    ///
    /// `CUDA_VISIBLE_DEVICES` names the pilot's own indices; the device nodes are the GPUs'
    /// (`/dev/nvidiaN` for numeric indices) plus the driver's control nodes.
    public static func pinning(_ devices: [String]) -> (environment: [String: String], deviceNodes: [String]) {
        guard !devices.isEmpty else { return ([:], []) }
        let nodes = devices.compactMap { Int($0).map { "/dev/nvidia\($0)" } }
        return (
            ["CUDA_VISIBLE_DEVICES": devices.joined(separator: ","), "NVIDIA_VISIBLE_DEVICES": devices.joined(separator: ",")],
            nodes + ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]
        )
    }
}
