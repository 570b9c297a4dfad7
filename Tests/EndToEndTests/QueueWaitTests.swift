import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// The development cluster's busy partition: a pilot job there waits in Slurm's queue (PENDING,
/// reason BeginTime) for the configured time, set by Slurm's own job_submit/lua plugin, and the
/// request says so while it waits.
extension ClusterServingTests {
    @Suite struct QueueWaitTests {
        init() throws { try DevCluster.require() }

        @Test func aPilotInTheQueuedPartitionWaitsInSlurmsQueueAndTheRequestSaysSo() async throws {
            let conf = ProcessInfo.processInfo.environment["SLURM_CONF"] ?? DevCluster.defaultConf
            let lua = try String(contentsOfFile: (conf as NSString).deletingLastPathComponent + "/job_submit.lua", encoding: .utf8)
            let wait = try #require(
                lua.range(of: #"os\.time\(\) \+ (\d+)"#, options: .regularExpression).flatMap {
                    Int(lua[$0].split(separator: " ").last ?? "")
                },
                "slurm/dev-cluster up writes job_submit.lua")
            let h = try await ServingHarness(pools: [ServingHarness.pool("slow", partition: "queued")])
            defer { h.stop() }
            let dir = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "patient", function: "behave", input: ["type": "string"], output: ["type": "string"])
            let id = try await h.publish(dir)
            let started = Date()
            let accepted = try await h.api.send("POST", "/v1/servables/\(id)/run?wait=2", json: ["input": "queued"])
            #expect(accepted.status == 202)
            let task = try #require(accepted.json["id"]?.stringValue)
            var waiting = TaskDocument(json: try await h.api.send("GET", "/v1/tasks/\(task)").json).waitingFor
            for _ in 0..<20 where waiting?.reason != "BeginTime" {
                try await Task.sleep(for: .milliseconds(250))
                waiting = TaskDocument(json: try await h.api.send("GET", "/v1/tasks/\(task)").json).waitingFor
            }
            #expect(waiting?.state == "PENDING" && waiting?.reason == "BeginTime", "\(String(describing: waiting))")
            let done = try await h.api.run(id, ["input": "again"], wait: Double(wait) + 60)
            #expect(done.json["output"] == "AGAIN")
            let first = try await h.api.send("GET", "/v1/tasks/\(task)?wait=30")
            #expect(first.json["output"] == "QUEUED")
            let took = Date().timeIntervalSince(started)
            #expect(took >= Double(wait) - 2, "the pilot job waited its turn (\(Int(took)) s for a \(wait) s queue wait)")
            let job = try #require(try h.slurmJobs(pool: "slow").first)
            #expect(job.partition == "queued")
        }

        @Test func busyPilotsOnAQueuedPartitionGetTheNextPilotQueuedAhead() async throws {
            let h = try await ServingHarness(pools: [ServingHarness.pool("ahead", partition: "queued", max: 2)])
            defer { h.stop() }
            let dir = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "sleeper", function: "slow", input: ["type": "integer"], output: ["type": "integer"], maxBatchSize: 1
            )
            let id = try await h.publish(dir)
            // The first pilot waits its turn in the queue; its start teaches the manager the wait.
            #expect(try await h.api.run(id, ["input": 1], wait: 120).json["output"] == 2)
            // Both slots of the running pilot busy for a while, nothing else queued.
            let busy = Task {
                try await h.api.run(id, ["inputs": [1, 2], "parameters": ["delay": 12]], wait: 120)
            }
            var jobs: [ServingHarness.SlurmJob] = []
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline {
                jobs = try h.slurmJobs(pool: "ahead").filter { $0.state == "PENDING" || $0.state == "RUNNING" }
                if jobs.count >= 2 { break }
                try await Task.sleep(for: .milliseconds(250))
            }
            #expect(jobs.count == 2, "a second pilot job queued ahead while the first is busy: \(jobs)")
            let pilots = try await h.pilots()
            let ahead = pilots.first { $0["why"]?.stringValue?.contains("queues ahead") == true }
            #expect(ahead != nil, "\(pilots)")
            #expect(ahead?["state"] == "PENDING")
            let answered = try await busy.value.json
            #expect(answered["outputs"] == [2, 4], "\(answered)")
        }
    }
}
