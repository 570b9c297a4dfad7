import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// Nothing accepted is lost: across a pilot that dies, a walltime that ends, and a service crash.
extension ClusterServingTests {
    @Suite struct ResilienceEndToEndTests {
        init() throws {
            try TestUsers.require()
            try DevCluster.require()
        }

        /// Sends `count` requests to the slow doubler and checks every answer is exactly 2x.
        func sendAndCheck(
            _ h: ServingHarness, _ id: String, count: Int, delay: Double, during: @escaping @Sendable () async throws -> Void
        ) async throws {
            try await withThrowingTaskGroup(of: (Int, JSONValue?).self) { group in
                for i in 0..<count {
                    group.addTask {
                        (
                            i,
                            try await h.api.run(id, ["input": .int(Int64(i)), "parameters": ["delay": .double(delay)]], wait: 300).json[
                                "output"]
                        )
                    }
                }
                group.addTask {
                    try await during()
                    return (-1, nil)
                }
                var answers: [Int: JSONValue?] = [:]
                for try await (i, output) in group where i >= 0 { answers[i] = output }
                #expect(answers.count == count)
                let wrong = answers.filter { $0.value != .int(Int64(2 * $0.key)) }
                #expect(wrong.isEmpty, "wrong or missing answers: \(wrong.sorted { $0.key < $1.key }.prefix(5))")
            }
        }

        /// Each task (input i) finishes after the restart with 2i, and the store agrees.
        func expectDoubled(_ taskIDs: [Int: String], from h: ServingHarness) async throws {
            for (i, task) in taskIDs {
                var reply = try await h.api.send("GET", "/v1/tasks/\(task)?wait=60")
                let deadline = Date().addingTimeInterval(120)
                while reply.status == 202, Date() < deadline { reply = try await h.api.send("GET", "/v1/tasks/\(task)?wait=10") }
                #expect(reply.json["output"] == .int(Int64(2 * i)), "task \(i): \(reply.json)")
            }
            try checkStore(h)
        }

        /// Every stored item answered exactly once, read from the service's own task store (tasks
        /// answered within their wait are never stored: their answers are checked over HTTP).
        func checkStore(_ h: ServingHarness) throws {
            let db = h.service.stateDirectory + "/tasks.sqlite"
            let out = try Subprocess.run(
                "/usr/bin/sqlite3", [db, "SELECT count(*), sum(state = 1), sum(state = 0), sum(state = 2) FROM items;"]
            ).stdout
            let f = out.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "|", omittingEmptySubsequences: false).map {
                $0.isEmpty ? 0 : Int($0) ?? -1  // sum() over no rows is NULL
            }
            #expect(f.count == 4 && f[0] == f[1] && f[2] == 0 && f[3] == 0, "items total|done|queued|failed = \(out)")
            let tasks = try Subprocess.run(
                "/usr/bin/sqlite3", [db, "SELECT count(*) FROM tasks WHERE finished IS NULL OR remaining != 0;"]
            )
            .stdout
            #expect(tasks.trimmingCharacters(in: .whitespacesAndNewlines) == "0")
        }

        /// A service with a slow doubler published and one pilot already serving it.
        func startDoublerWithAPilot() async throws -> (ServingHarness, String, ServingHarness.SlurmJob) {
            let h = try await ServingHarness(pools: [ServingHarness.pool("cpu", max: 2)])
            let dir = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "doubler", function: "slow", input: ["type": "integer"], output: ["type": "integer"], maxBatchSize: 8
            )
            let id = try await h.publish(dir)
            #expect(try await h.api.run(id, ["input": 1]).json["output"] == 2)
            let victim = try #require(try h.slurmJobs(pool: "cpu").first { $0.state == "RUNNING" })
            return (h, id, victim)
        }

        @Test func pilotCancelledMidBatchLosesNothing() async throws {
            let (h, id, victim) = try await startDoublerWithAPilot()
            defer { h.stop() }
            try await sendAndCheck(h, id, count: 300, delay: 0.02) {
                try await Task.sleep(for: .milliseconds(700))
                let pilots = try await h.pilots()
                #expect(
                    pilots.contains { $0["job_id"]?.intValue == Int64(victim.id) && ($0["running_batches"]?.intValue ?? 0) > 0 },
                    "the pilot was busy when cancelled")
                _ = try DevCluster.command("scancel", ["\(victim.id)"])
            }
            let ended = try await h.settledSlurmJob(pool: "cpu", id: victim.id)
            #expect(ended?.state == "CANCELLED", "\(String(describing: ended))")
            try checkStore(h)
        }

        @Test func nodeFailureMidBatchLosesNothing() async throws {
            let (h, id, victim) = try await startDoublerWithAPilot()
            defer { h.stop() }
            defer { _ = try? DevCluster.command("scontrol", ["update", "nodename=\(victim.nodes)", "state=resume"]) }
            try await sendAndCheck(h, id, count: 300, delay: 0.02) {
                try await Task.sleep(for: .milliseconds(700))
                // The node goes down under the pilot: Slurm ends the job with NODE_FAIL.
                _ = try DevCluster.command("scontrol", ["update", "nodename=\(victim.nodes)", "state=down", "reason=dlhub-test"])
            }
            let ended = try await h.settledSlurmJob(pool: "cpu", id: victim.id)
            #expect(ended?.state == "NODE_FAIL", "\(String(describing: ended))")
            try checkStore(h)
        }

        /// The durability contract for waiting requests: one answered within its wait is never
        /// stored; one whose wait runs out gets its id only once it is stored, and survives a kill.
        @Test func aTaskIdHandedOutAfterTheWaitRanOutSurvivesAServiceKill() async throws {
            let dir = try TemporaryDirectory("dlhub-restart-live")
            var h = try await ServingHarness(directory: dir)
            let fixture = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "doubler", function: "slow", input: ["type": "integer"], output: ["type": "integer"])
            let id = try await h.publish(fixture)
            let quick = try await h.api.run(id, ["input": 21, "parameters": ["delay": 0.0]], wait: 120)
            #expect(quick.status == 200 && quick.json["output"] == 42)
            let db = h.service.stateDirectory + "/tasks.sqlite"
            let quickID = try #require(quick.json["id"]?.stringValue)
            let stored = try Subprocess.run("/usr/bin/sqlite3", [db, "SELECT count(*) FROM tasks WHERE id = '\(quickID)';"])
            #expect(stored.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "answered in time: nothing written")

            var taskIDs: [Int: String] = [:]
            for i in 0..<6 {
                let reply = try await h.api.send(
                    "POST", "/v1/servables/\(id)/run?wait=0.3", json: ["input": .int(Int64(i)), "parameters": ["delay": 1.5]])
                #expect(reply.status == 202, "\(reply.json)")
                taskIDs[i] = reply.json["id"]?.stringValue
            }
            h.service.kill()  // SIGKILL, with the tasks whose ids were handed out queued or running
            h = try await ServingHarness(directory: dir)
            defer { h.stop() }
            try await expectDoubled(taskIDs, from: h)
        }

        @Test func serviceKilledWithQueuedTasksCompletesThemAfterRestart() async throws {
            let dir = try TemporaryDirectory("dlhub-restart-serving")
            var h = try await ServingHarness(directory: dir)
            let fixture = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "doubler", function: "slow", input: ["type": "integer"], output: ["type": "integer"])
            let id = try await h.publish(fixture)
            var taskIDs: [Int: String] = [:]
            for i in 0..<40 {
                let reply = try await h.api.send(
                    "POST", "/v1/servables/\(id)/run", json: ["input": .int(Int64(i)), "parameters": ["delay": 0.1]])
                #expect(reply.status == 202)
                taskIDs[i] = reply.json["id"]?.stringValue
            }
            h.service.kill()  // SIGKILL, with the tasks queued or running
            h = try await ServingHarness(directory: dir)
            defer { h.stop() }
            try await expectDoubled(taskIDs, from: h)
        }

        @Test(.timeLimit(.minutes(10)))
        func walltimeReplacementsKeepSteadyLoadFlowing() async throws {
            // One-minute pilots on the partition where every job waits 30 s in Slurm's queue: each
            // replacement must be submitted early enough to be through the queue in time.
            let h = try await ServingHarness(pools: [ServingHarness.pool("short", partition: "queued", max: 3, walltime: 1, idle: 600)])
            defer { h.stop() }
            let dir = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "doubler", function: "slow", input: ["type": "integer"], output: ["type": "integer"])
            let id = try await h.publish(dir)
            // The first pilot's queue wait is the warm-up.
            #expect(try await h.api.run(id, ["input": 0, "parameters": ["delay": 0.0]], wait: 120).json["output"] == 0)
            let start = Date()
            var sent = 0
            var failures: [String] = []
            // Steady load for three minutes: a few requests every 200 ms, each checked.
            while Date().timeIntervalSince(start) < 180 {
                let batch = try await withThrowingTaskGroup(of: (Int, JSONValue).self) { group in
                    for k in 0..<4 {
                        let n = sent + k
                        group.addTask {
                            (n, try await h.api.run(id, ["input": .int(Int64(n)), "parameters": ["delay": 0.01]], wait: 120).json)
                        }
                    }
                    var out: [(Int, JSONValue)] = []
                    for try await r in group { out.append(r) }
                    return out
                }
                for (n, json) in batch where json["output"] != .int(Int64(2 * n)) { failures.append("\(n): \(json)") }
                sent += 4
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(failures.isEmpty, "\(failures.count) of \(sent) failed: \(failures.prefix(3))")
            // Slurm's own record: each pilot's successor was submitted before it ended.
            let jobs = try h.slurmJobs(pool: "short").sorted { $0.id < $1.id }
            #expect(jobs.count >= 3, "\(jobs)")
            for (old, new) in zip(jobs, jobs.dropFirst()) where old.state != "RUNNING" {
                #expect(new.submit < old.end, "job \(new.id) submitted \(new.submit), after job \(old.id) ended \(old.end)")
            }
        }
    }
}
