import DLHubCore
import Foundation

/// The pilot job script: the template from `slurm/` with a pool's values filled in.
public struct PilotScript: Sendable {
    public let template: String

    public init(templatePath: String) throws(DLHubError) {
        guard let data = FileManager.default.contents(atPath: templatePath) else {
            throw DLHubError(.internal, "cannot read the pilot job template \(templatePath); set pilot_template in the configuration")
        }
        template = String(decoding: data, as: UTF8.self)
    }

    public struct Values: Sendable {
        public var pool: PoolConfiguration
        public var service: String
        public var pilot: String
        public var python: String
        public var workerScript: String
        public var signalSeconds: Int
    }

    public func render(_ v: Values) -> String {
        let p = v.pool
        let loads =
            p.modules.isEmpty
            ? "# (no modules to load for this pool)" : p.modules.map { "module load \(Self.quote($0))" }.joined(separator: "\n")
        let values: [String: String] = [
            "pool": p.name, "partition": p.partition ?? "(default)", "account": p.account ?? "-", "qos": p.qos ?? "-",
            "constraint": p.constraint ?? "-", "gres": p.gres ?? "-", "nodes": String(p.nodes),
            "walltime_minutes": String(p.walltimeMinutes), "signal_seconds": String(v.signalSeconds),
            "module_loads": loads, "service": v.service, "pilot": Self.quote(v.pilot), "python": Self.quote(v.python),
            "worker_script": Self.quote(v.workerScript), "max_workers": String(p.maxWorkersPerPilot),
        ]
        var out = template
        for (k, value) in values { out = out.replacingOccurrences(of: "{{\(k)}}", with: value) }
        return out
    }

    static func quote(_ s: String) -> String {
        s.allSatisfy { $0.isLetter || $0.isNumber || "/._-:=+@".contains($0) }
            ? s : "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
