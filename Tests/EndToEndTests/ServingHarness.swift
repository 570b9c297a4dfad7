import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// Every test that runs pilot jobs, one at a time: their pilots share the cluster's nodes, and a
/// test that fails a node (or fills a partition) would otherwise hit another test's pilots.
@Suite(.serialized) struct ClusterServingTests {}

/// A live dlhubd on the local Slurm cluster with test pools, plus an API client.
struct ServingHarness {
    let service: LiveService
    let api: APIClient
    let work: TemporaryDirectory
    /// Appended to pool names, so Slurm job names (dlhub-pilot-<pool>) are unique to this test.
    let tag: String

    static func pool(
        _ name: String, partition: String = "cpu", min: Int = 0, max: Int = 2, walltime: Int = 30, idle: Int = 300, memory: Int = 4000,
        extra: [String: JSONValue] = [:]
    ) -> JSONValue {
        var p: [String: JSONValue] = [
            "name": .string(name), "partition": .string(partition), "min_pilots": .int(Int64(min)), "max_pilots": .int(Int64(max)),
            "walltime_minutes": .int(Int64(walltime)), "idle_timeout_seconds": .int(Int64(idle)), "cores_per_node": 2,
            "memory_per_node_mb": .int(Int64(memory)),
        ]
        for (k, v) in extra { p[k] = v }
        return .object(p)
    }

    /// `tag` names the pools (random unless given: a restarted service keeps its pools by passing the first one's).
    init(
        pools: [JSONValue] = [pool("cpu")], directory: TemporaryDirectory? = nil, extraConfig: [String: JSONValue] = [:], tag: String? = nil
    ) async throws {
        try DevCluster.require()
        let conf = ProcessInfo.processInfo.environment["SLURM_CONF"] ?? DevCluster.defaultConf
        let tag = tag ?? String(UInt32.random(in: 0...UInt32.max), radix: 36)
        self.tag = tag
        let tagged = pools.map { $0.setting(["name"], to: .string(($0["name"]?.stringValue ?? "") + "-" + tag)) }
        var config: [String: JSONValue] = ["pools": .array(tagged), "result_retention_seconds": 3600]
        for (k, v) in extraConfig { config[k] = v }
        service = try LiveService(directory: directory, config: .object(config), environment: ["SLURM_CONF": conf])
        api = APIClient(url: service.url, connections: 256)
        try await api.login()
        work = try TemporaryDirectory("dlhub-serving")
    }

    func publish(_ dir: String) async throws -> String {
        let reply = try await api.publish(directory: dir)
        guard reply.status == 201, let id = reply.json["id"]?.stringValue, let v = reply.json["version"]?.intValue else {
            throw TestSetupError("publish failed: \(reply.json)")
        }
        return "\(id)@\(v)"
    }

    /// An unlabelled counter or gauge from `/metrics` (0 when absent).
    func metric(_ name: String) async throws -> Int {
        let text = try await api.send("GET", "/metrics").json.stringValue ?? ""
        let line = text.split(separator: "\n").first { $0.hasPrefix(name + " ") }
        return line.flatMap { Int(Double($0.split(separator: " ").last ?? "") ?? -1) } ?? 0
    }

    func pilots() async throws -> [JSONValue] {
        try await api.send("GET", "/v1/pilots").json["pools"]?.arrayValue?.flatMap { $0["pilots"]?.arrayValue ?? [] } ?? []
    }

    /// The configured name of a test pool.
    func pool(_ name: String) -> String { name + "-" + tag }

    /// Pilot jobs of a pool as Slurm lists them (every state, while MinJobAge keeps them).
    func slurmJobs(pool: String) throws -> [SlurmJob] {
        let out = try DevCluster.command(
            "squeue", ["-h", "--states=all", "-n", "dlhub-pilot-\(self.pool(pool))", "-o", "%i|%T|%V|%e|%N|%P|%u"]
        ).stdout
        return out.split(separator: "\n").compactMap { line in
            let f = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 7, let id = UInt32(f[0]) else { return nil }
            return SlurmJob(id: id, state: f[1], submit: f[2], end: f[3], nodes: f[4], partition: f[5], user: f[6])
        }
    }

    /// The job's state once Slurm has finished with it: a cancelled job passes through COMPLETING
    /// while its processes are signalled and reaped, which can outlast the requests it was serving.
    func settledSlurmJob(pool: String, id: UInt32, within seconds: Double = 90) async throws -> SlurmJob? {
        let deadline = Date().addingTimeInterval(seconds)
        var job = try slurmJobs(pool: pool).first { $0.id == id }
        while Date() < deadline, let state = job?.state, ["RUNNING", "COMPLETING", "PENDING", "SUSPENDED"].contains(state) {
            try await Task.sleep(for: .milliseconds(250))
            job = try slurmJobs(pool: pool).first { $0.id == id }
        }
        return job
    }

    struct SlurmJob {
        var id: UInt32
        var state: String
        var submit: String
        var end: String
        var nodes: String
        var partition: String
        var user: String
    }

    func stop() {
        service.stop()
    }
}
