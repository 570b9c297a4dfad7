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

        /// A burst after idleness on a partition where every job waits 30 s: the warm minimum takes
        /// it, so no request waits for a Slurm job (each would take 30 s or more); the busy pilot
        /// gets the next one queued ahead; and the node-time held stays within what the admin
        /// configured (the warm pilot for the whole time, plus one queued-ahead pilot idling out its
        /// idle timeout). `benchmarks/queue-wait` measures the same beside plain submit-on-demand.
        @Test(.timeLimit(.minutes(5)))
        func aBurstAfterIdlenessIsAbsorbedWithoutWaitingOnTheQueueAndWithinTheIdleBudget() async throws {
            let idleTimeout = 10
            let h = try await ServingHarness(pools: [
                ServingHarness.pool("bursty", partition: "queued", min: 1, max: 3, idle: idleTimeout, extra: ["max_queued_ahead": 1])
            ])
            defer { h.stop() }
            let dir = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "doubler", function: "slow", input: ["type": "integer"], output: ["type": "integer"])
            let id = try await h.publish(dir)
            // Warm-up: the first request waits for the warm pilot's queue wait.
            #expect(try await h.api.run(id, ["input": 1, "parameters": ["delay": 0.0]], wait: 120).json["output"] == 2)
            let start = Date()
            // Idle for longer than the idle timeout: a pool without a warm minimum would have no pilot now.
            try await Task.sleep(for: .seconds(Double(idleTimeout) + 5))
            // The burst: 100 requests arriving within a second, then steady traffic for 10 s.
            var slowest: [Double] = []
            var wrong: [String] = []
            try await withThrowingTaskGroup(of: (Int, Double, JSONValue).self) { group in
                for n in 0..<180 {
                    let at = n < 100 ? Double(n) * 0.01 : 1 + Double(n - 100) * 0.125
                    group.addTask {
                        try await Task.sleep(for: .seconds(at))
                        let sent = Date()
                        let reply = try await h.api.run(id, ["input": .int(Int64(n)), "parameters": ["delay": 0.02]], wait: 120)
                        return (n, Date().timeIntervalSince(sent), reply.json)
                    }
                }
                for try await (n, took, json) in group {
                    slowest.append(took)
                    if json["output"] != .int(Int64(2 * n)) { wrong.append("\(n): \(json)") }
                }
            }
            #expect(wrong.isEmpty, "\(wrong.prefix(3))")
            // A request that waited for a Slurm job took at least the 30 s queue wait.
            let waitedOnQueue = slowest.filter { $0 >= 20 }.count
            #expect(waitedOnQueue == 0, "\(waitedOnQueue) of 180 requests waited on Slurm's queue; slowest \(slowest.max() ?? 0) s")
            // Long enough for a pilot queued ahead during the burst to come through the queue and
            // idle out; then node-time from Slurm's own record, over the whole run.
            try await Task.sleep(for: .seconds(30 + Double(idleTimeout) + 10))
            let end = Date()
            let jobs = try DevCluster.command(
                "squeue", ["-h", "--states=all", "-n", "dlhub-pilot-\(h.pool("bursty"))", "-o", "%i|%T|%S|%e"]
            ).stdout.split(separator: "\n").map { $0.split(separator: "|").map(String.init) }
            let format = DateFormatter()
            format.dateFormat = "yyyy-MM-dd'T'HH:mm:ss"
            format.timeZone = TimeZone.current
            var held = 0.0
            for f in jobs where f.count == 4 && f[1] != "PENDING" {
                guard let started = format.date(from: f[2]) else { continue }
                let ended = f[1] == "RUNNING" ? end : (format.date(from: f[3]) ?? end)
                held += max(0, min(ended, end).timeIntervalSince(max(started, start)))
            }
            let window = end.timeIntervalSince(start)
            // min_pilots x window + max_queued_ahead x (idle timeout + 15 s of ticks and draining).
            let budget = 1 * window + 1 * Double(idleTimeout + 15)
            #expect(held <= budget, "pilots held \(Int(held)) node-seconds in \(Int(window)) s; the budget is \(Int(budget)): \(jobs)")
        }
    }
}
