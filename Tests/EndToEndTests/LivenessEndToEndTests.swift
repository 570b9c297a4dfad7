import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// Every accepted request ends (docs/requests.md, "Every request ends"): with an answer, an error
/// that says what to do, or a cancellation, within the bound stated there. A lost pilot and a
/// walltime end are walked in ResilienceEndToEndTests; the rest of the known failure paths here.
extension ClusterServingTests {
    @Suite struct LivenessEndToEndTests {
        init() throws {
            try TestUsers.require()
            try DevCluster.require()
        }

        /// Follows a task until it is in a final state or `bound` seconds have passed.
        static func outcome(_ h: ServingHarness, _ reply: APIClient.Reply, bound: Double) async throws -> JSONValue {
            var json = reply.json
            let deadline = Date().addingTimeInterval(bound)
            while !TaskDocument.finishedStatuses.contains(json["status"]?.stringValue ?? ""), Date() < deadline {
                guard let task = json["id"]?.stringValue else { break }
                json = try await h.api.send("GET", "/v1/tasks/\(task)?wait=5").json
            }
            return json
        }

        /// Found from outside: the first request for a servable that raises at import failed
        /// within a second; the second and third waited out their whole `?wait`, were handed a
        /// task id, and stayed queued for ever while the pilot ran.
        @Test func aServableThatFailsToLoadFailsEveryLaterRequestAtOnceAndSaysWhenItIsTriedAgain() async throws {
            let h = try await ServingHarness(pools: [ServingHarness.pool("cpu", max: 1)])
            defer { h.stop() }
            let broken = try await h.publish(
                try ServingFixtures.pythonModule(
                    in: h.work.path, name: "brokenload", module: "brokenload",
                    code: "raise RuntimeError('this module refuses to import')\ndef run(x):\n    return x\n", function: "run"))
            for attempt in 0..<3 {
                // A wait long enough that a request left queued comes back as 202 and a task id.
                let reply = try await h.api.send("POST", "/v1/servables/\(broken)/run?wait=45", json: ["input": "x"])
                #expect(reply.status != 202, "request \(attempt) was left waiting: \(reply.json)")
                let json = try await Self.outcome(h, reply, bound: 60)
                #expect(json["status"] == "failed", "request \(attempt): \(json)")
                let error = json["error"]?.stringValue ?? ""
                #expect(error.contains("this module refuses to import"), "request \(attempt): \(error)")
                #expect(error.contains("tried again"), "request \(attempt) is not told when: \(error)")
            }
            // Shown by describe, and the owner's logs hold the traceback.
            let described = try await h.api.send("GET", "/v1/servables/\(broken)").json
            #expect(described["load_failure"]?["error"]?.stringValue?.contains("refuses to import") == true, "\(described)")
            #expect(described["load_failure"]?["attempts"]?.intValue == 1, "the failed load was retried without waiting")
            let cli = try CLI(service: h.service)
            let describe = try cli.run(as: "root", ["describe", broken])
            #expect(describe.stdout.contains("LOAD FAILED"), "\(describe.stdout)")
            let logs = try await h.api.send("GET", "/v1/servables/\(broken)/logs").json["entries"]?.arrayValue ?? []
            #expect(logs.contains { $0["error"]?.stringValue?.contains("refuses to import") == true }, "\(logs)")

            // A fixed version is another servable version: tried at once.
            let fixedDir = try ServingFixtures.pythonModule(
                in: h.work.path + "/v2", name: "brokenload", module: "brokenload", code: "def run(x):\n    return x + '!'\n",
                function: "run")
            let fixed = try await h.publish(fixedDir)
            #expect(fixed != broken)
            let answer = try await h.api.run(fixed, ["input": "x"], wait: 60)
            #expect(answer.json["output"] == "x!", "\(answer.json)")
            let again = try await h.api.send("GET", "/v1/servables/\(fixed)").json
            #expect(again["load_failure"] == .null, "\(again)")
        }

        /// The failure paths the project knows, each request followed until it ends: a worker that
        /// crashes, one that hangs past its timeout, an environment that cannot be built, and a
        /// request cancelled while it waits. None is left queued or running.
        @Test func everyKnownFailurePathEndsTheRequestWithinItsBound() async throws {
            let index = try LocalPackageIndex(delay: 0, wheels: [.greeting])
            defer { index.stop() }
            let h = try await ServingHarness(
                pools: [ServingHarness.pool("cpu", max: 1)], extraConfig: ["package_index": .string(index.url)])
            defer { h.stop() }
            let code = """
                import os, time

                def crash(x):
                    os._exit(3)

                def hang(x):
                    time.sleep(3600)

                def slow(x):
                    time.sleep(2)
                    return x
                """
            func servable(
                _ name: String, _ function: String, timeout: Double = 60, dependencies: [String: String] = [:]
            ) async throws
                -> String
            {
                try await h.publish(
                    try ServingFixtures.pythonModule(
                        in: h.work.path, name: name, module: "paths", code: code, function: function, dependencies: dependencies,
                        timeout: timeout, maxBatchSize: 1))
            }
            let crasher = try await servable("crasher", "crash")
            let hanger = try await servable("hanger", "hang", timeout: 3)
            let unbuildable = try await servable("unbuildable", "slow", dependencies: ["dlhub-test-greeting": "9.9"])
            let slow = try await servable("slowone", "slow")

            // The bound for each, from docs/requests.md: a batch ends by its deadline
            // (timeout x (items + 1) + 30 s); a build by the build timeout; these with room to spare.
            let cases: [(name: String, id: String, bound: Double, status: String, says: String)] = [
                ("crash", crasher, 120, "failed", "crashed"),
                ("hang past timeout", hanger, 120, "failed", "3"),
                ("environment build failed", unbuildable, 300, "failed", "building the Python environment"),
            ]
            for c in cases {
                let reply = try await h.api.send("POST", "/v1/servables/\(c.id)/run?wait=1", json: ["input": "x"])
                let json = try await Self.outcome(h, reply, bound: c.bound)
                #expect(json["status"]?.stringValue == c.status, "\(c.name): \(json)")
                #expect(json["error"]?.stringValue?.contains(c.says) == true, "\(c.name): \(json)")
            }
            // A second request for the servable whose environment failed ends too.
            let second = try await h.api.send("POST", "/v1/servables/\(unbuildable)/run?wait=30", json: ["input": "y"])
            let secondOutcome = try await Self.outcome(h, second, bound: 120)
            #expect(secondOutcome["status"] == "failed", "\(secondOutcome)")

            // Cancelled while queued behind a slow one: it ends as cancelled, never runs.
            let ahead = try await h.api.send("POST", "/v1/servables/\(slow)/run?wait=0", json: ["input": "a"])
            let behind = try await h.api.send("POST", "/v1/servables/\(slow)/run?wait=0", json: ["inputs": ["b", "c", "d", "e"]])
            let task = try #require(behind.json["id"]?.stringValue, "\(behind.json)")
            #expect(try await h.api.send("POST", "/v1/tasks/\(task)/cancel").status == 200)
            let cancelled = try await Self.outcome(h, try await h.api.send("GET", "/v1/tasks/\(task)"), bound: 60)
            #expect(cancelled["status"] == "cancelled", "\(cancelled)")
            let first = try await Self.outcome(h, ahead, bound: 120)
            #expect(first["status"] == "completed", "\(first)")
        }

        /// Found by the soak: an input sent to an idle worker that had been killed a moment before
        /// failed as if it had crashed that worker ("the worker crashed (exit status 137)"). The
        /// input never reached it; it runs on a fresh worker instead.
        @Test func anInputForAWorkerThatDiedWhileIdleRunsOnAFreshOne() async throws {
            let h = try await ServingHarness(pools: [ServingHarness.pool("cpu", max: 1)])
            defer { h.stop() }
            let id = try await h.publish(
                try ServingFixtures.pythonModule(
                    in: h.work.path, name: "sturdy", module: "sturdy", code: "def run(x):\n    return x + '!'\n", function: "run"))
            #expect(try await h.api.run(id, ["input": "a"], wait: 120).json["output"] == "a!")
            let ps = try Subprocess.run("/usr/bin/ps", ["-eo", "pid=,comm=,args="]).stdout
            let workers = ps.split(separator: "\n").compactMap { line -> Int32? in
                let f = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
                guard f.count == 3, f[1].hasPrefix("python"), f[2].contains("worker.py") else { return nil }
                return Int32(f[0])
            }
            #expect(!workers.isEmpty, "no worker to kill")
            for pid in workers { kill(pid, SIGKILL) }
            try await Task.sleep(for: .seconds(2))
            let after = try await h.api.run(id, ["input": "b"], wait: 120)
            #expect(after.json["output"] == "b!", "\(after.json)")
        }

        /// Found by the red team: an input cancelled while it ran ("1 already running will
        /// finish") went back to the queue when its pilot job was then cancelled, ran again on
        /// the next pilot, and its task never read `cancelled`. Now it is answered with the
        /// cancellation instead of running again.
        @Test func aCancelledInputWhosePilotIsLostDoesNotRunAgain() async throws {
            let h = try await ServingHarness(pools: [ServingHarness.pool("cpu", max: 1)])
            defer { h.stop() }
            let id = try await h.publish(
                try ServingFixtures.pythonModule(
                    in: h.work.path, name: "lengthy", module: "lengthy",
                    code: "import time\ndef run(x):\n    time.sleep(20)\n    return x\n",
                    function: "run", timeout: 120))
            let accepted = try await h.api.send("POST", "/v1/servables/\(id)/run?wait=0", json: ["input": "x"])
            let task = try #require(accepted.json["id"]?.stringValue, "\(accepted.json)")
            // Running on a pilot.
            var status = ""
            let started = Date().addingTimeInterval(120)
            while status != "running", Date() < started {
                try await Task.sleep(for: .milliseconds(250))
                status = try await h.api.send("GET", "/v1/tasks/\(task)").json["status"]?.stringValue ?? ""
            }
            #expect(status == "running")
            let cancel = try await h.api.send("POST", "/v1/tasks/\(task)/cancel")
            #expect(cancel.status == 200, "\(cancel.json)")
            let job = try #require(try h.slurmJobs(pool: "cpu").first { $0.state == "RUNNING" })
            _ = try DevCluster.command("scancel", [String(job.id)])
            // Answered with the cancellation, not run again for 20 s on the next pilot.
            var final: JSONValue = [:]
            let deadline = Date().addingTimeInterval(15)
            while Date() < deadline {
                final = try await h.api.send("GET", "/v1/tasks/\(task)").json
                if TaskDocument.finishedStatuses.contains(final["status"]?.stringValue ?? "") { break }
                try await Task.sleep(for: .milliseconds(250))
            }
            #expect(final["status"] == "cancelled", "\(final)")
        }
    }
}
