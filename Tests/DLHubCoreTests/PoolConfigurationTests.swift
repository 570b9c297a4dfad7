import DLHubCore
import Testing

/// A pool's settings in the configuration file: flat, or grouped into what is asked of Slurm,
/// what the nodes offer for placement, and the pilot lifecycle.
@Suite struct PoolConfigurationTests {
    @Test func groupedAndFlatSettingsMeanTheSame() throws {
        let grouped: JSONValue = [
            "name": "cpu",
            "slurm": ["partition": "batch", "account": "proj", "walltime_minutes": 120, "cores_per_node": 8, "modules": ["gcc/12"]],
            "placement": ["memory_per_node_mb": 64000, "gpus_per_node": 2],
            "lifecycle": ["min_pilots": 1, "max_pilots": 6, "idle_timeout_seconds": 90, "max_queued_ahead": 2, "worker_network": true],
        ]
        let flat: JSONValue = [
            "name": "cpu", "partition": "batch", "account": "proj", "walltime_minutes": 120, "cores_per_node": 8, "modules": ["gcc/12"],
            "memory_per_node_mb": 64000, "gpus_per_node": 2, "min_pilots": 1, "max_pilots": 6, "idle_timeout_seconds": 90,
            "max_queued_ahead": 2, "worker_network": true,
        ]
        let a = try PoolConfiguration(json: grouped, path: "pools[0]")
        let b = try PoolConfiguration(json: flat, path: "pools[0]")
        #expect(a == b)
        #expect(a.partition == "batch" && a.coresPerNode == 8 && a.memoryPerNodeMB == 64000 && a.maxQueuedAhead == 2 && a.workerNetwork)
    }

    @Test func aSettingInTheWrongGroupIsNamedWithWhereItBelongs() throws {
        let wrong: JSONValue = ["name": "cpu", "slurm": ["min_pilots": 1]]
        #expect {
            try PoolConfiguration(json: wrong, path: "pools[0]")
        } throws: { error in
            (error as? DLHubError)?.message == "pools[0].slurm: 'min_pilots' is not a slurm setting (it belongs in lifecycle)"
        }
        let unknown: JSONValue = ["name": "cpu", "placement": ["colour": "red"]]
        #expect(throws: DLHubError.self) { try PoolConfiguration(json: unknown, path: "pools[0]") }
        let notObject: JSONValue = ["name": "cpu", "lifecycle": 3]
        #expect(throws: DLHubError.self) { try PoolConfiguration(json: notObject, path: "pools[0]") }
        let badValue: JSONValue = ["name": "cpu", "lifecycle": ["max_pilots": -1]]
        #expect {
            try PoolConfiguration(json: badValue, path: "pools[0]")
        } throws: { error in
            (error as? DLHubError)?.message == "pools[0].lifecycle.max_pilots must be a non-negative integer"
        }
    }

    @Test func everyGroupedSettingIsOneThePoolKnows() throws {
        // Each key of each group, alone, parses (no group lists a key the parser does not take).
        for group in PoolConfiguration.groups {
            for key in group.keys {
                let value: JSONValue =
                    key == "modules"
                    ? ["m/1"]
                    : key == "worker_network"
                        ? true : ["partition", "account", "qos", "constraint", "features", "gres"].contains(key) ? "x" : 1
                _ = try PoolConfiguration(
                    json: ["name": "p", .init(stringLiteral: group.name): [.init(stringLiteral: key): value]], path: "p")
            }
        }
    }
}
