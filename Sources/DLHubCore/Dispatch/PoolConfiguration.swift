/// A named pilot configuration: where and how pilot jobs are submitted.
///
/// Its settings fall in three groups, which the configuration file may spell as nested objects
/// (`"slurm": {...}`, `"placement": {...}`, `"lifecycle": {...}`) or flat: what is asked of
/// Slurm (every one of these reaches the job submission, `PilotScript.submission`), what the
/// nodes offer for placing servables (never sent to Slurm), and how pilots live.
public struct PoolConfiguration: Sendable, Hashable {
    public var name: String

    // MARK: Asked of Slurm
    public var partition: String?
    public var account: String?
    public var qos: String?
    public var constraint: String?
    public var gres: String?
    public var nodes: Int = 1
    public var walltimeMinutes: Int = 60
    /// `module load` lines in the pilot job script.
    public var modules: [String] = []
    /// CPUs a pilot requests on each node; nil leaves Slurm's default (one), which runs anywhere.
    /// Also the most cores a servable placed here may declare.
    public var coresPerNode: Int?

    // MARK: What the nodes offer, for placement (not sent to Slurm)
    public var memoryPerNodeMB: Int = 4000
    public var gpusPerNode: Int = 0

    // MARK: The pilot lifecycle
    public var minPilots: Int = 0
    public var maxPilots: Int = 4
    public var idleTimeoutSeconds: Int = 300
    /// Workers one pilot keeps resident at most.
    public var maxWorkersPerPilot: Int = 8
    /// Whether workers on this pool keep the node's network (off: each worker has none).
    public var workerNetwork = false
    /// Pilot jobs this pool may keep waiting in Slurm's queue ahead of demand, when its pilots
    /// are busy and its jobs are seen to wait in the queue (`PoolPolicy`); 0 turns it off.
    public var maxQueuedAhead = 1

    public init(name: String) { self.name = name }

    /// The pool a first run gets with no configuration: the cluster's default partition.
    public static var clusterDefault: PoolConfiguration { PoolConfiguration(name: "default") }

    /// The settings of each group, as the configuration file names them.
    public static let groups: [(name: String, keys: Set<String>)] = [
        (
            "slurm",
            ["partition", "account", "qos", "constraint", "features", "gres", "nodes", "walltime_minutes", "modules", "cores_per_node"]
        ),
        ("placement", ["memory_per_node_mb", "gpus_per_node"]),
        ("lifecycle", ["min_pilots", "max_pilots", "idle_timeout_seconds", "max_workers_per_pilot", "worker_network", "max_queued_ahead"]),
    ]

    public init(json: JSONValue, path: String) throws(DLHubError) {
        guard let name = json["name"]?.stringValue else { throw DLHubError(.badRequest, "\(path).name is missing") }
        self.name = name
        var settings: [(String, String, JSONValue)] = []
        for (key, value) in json.objectValue ?? [:] {
            if let group = Self.groups.first(where: { $0.name == key }) {
                guard let members = value.objectValue else {
                    throw DLHubError(.badRequest, "\(path).\(key) must be an object of \(key) settings")
                }
                for (inner, v) in members {
                    guard group.keys.contains(inner) else {
                        let home = Self.groups.first { $0.keys.contains(inner) }?.name
                        throw DLHubError(
                            .badRequest,
                            "\(path).\(key): '\(inner)' is not a \(key) setting"
                                + (home.map { " (it belongs in \($0))" } ?? " (known: \(group.keys.sorted().joined(separator: ", ")))"))
                    }
                    settings.append(("\(path).\(key)", inner, v))
                }
            } else {
                settings.append((path, key, value))
            }
        }
        for (path, key, value) in settings {
            func int() throws(DLHubError) -> Int {
                guard let n = value.intValue, n >= 0 else { throw DLHubError(.badRequest, "\(path).\(key) must be a non-negative integer") }
                return Int(n)
            }
            switch key {
            case "name": break
            case "partition": partition = value.stringValue
            case "account": account = value.stringValue
            case "qos": qos = value.stringValue
            case "constraint", "features": constraint = value.stringValue
            case "gres": gres = value.stringValue
            case "nodes": nodes = max(1, try int())
            case "walltime_minutes": walltimeMinutes = max(1, try int())
            case "min_pilots": minPilots = try int()
            case "max_pilots": maxPilots = try int()
            case "idle_timeout_seconds": idleTimeoutSeconds = try int()
            case "modules": modules = value.arrayValue?.compactMap(\.stringValue) ?? []
            case "cores_per_node": coresPerNode = max(1, try int())
            case "memory_per_node_mb": memoryPerNodeMB = try int()
            case "gpus_per_node": gpusPerNode = try int()
            case "max_workers_per_pilot": maxWorkersPerPilot = max(1, try int())
            case "max_queued_ahead": maxQueuedAhead = try int()
            case "worker_network":
                guard let b = value.boolValue else { throw DLHubError(.badRequest, "\(path).worker_network must be true or false") }
                workerNetwork = b
            default: throw DLHubError(.badRequest, "\(path): unknown pool setting '\(key)'")
            }
        }
        if minPilots > maxPilots { throw DLHubError(.badRequest, "\(path): min_pilots (\(minPilots)) is above max_pilots (\(maxPilots))") }
    }
}
