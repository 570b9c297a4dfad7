/// A named pilot configuration: where and how pilot jobs are submitted.
public struct PoolConfiguration: Sendable, Hashable {
    public var name: String
    public var partition: String?
    public var account: String?
    public var qos: String?
    public var constraint: String?
    public var gres: String?
    public var nodes: Int = 1
    public var walltimeMinutes: Int = 60
    public var minPilots: Int = 0
    public var maxPilots: Int = 4
    public var idleTimeoutSeconds: Int = 300
    public var modules: [String] = []
    /// What a node of this pool offers, for placement.
    /// CPUs a pilot requests on each node; nil leaves Slurm's default (one), which runs anywhere.
    public var coresPerNode: Int?
    public var memoryPerNodeMB: Int = 4000
    public var gpusPerNode: Int = 0
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

    public init(json: JSONValue, path: String) throws(DLHubError) {
        guard let name = json["name"]?.stringValue else { throw DLHubError(.badRequest, "\(path).name is missing") }
        self.name = name
        for (key, value) in json.objectValue ?? [:] {
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
