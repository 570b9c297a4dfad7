import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// A servable that forks without end is stopped: by the process limit (RLIMIT_NPROC, set by the
/// pilot for every worker: 1024 + 64 per worker slot) when the bomb gets there first, else by the
/// pilot's count of the worker's own processes (`worker_max_processes`, checked once a second:
/// the worker is killed and its batch fails naming the bound; docs/isolation.md). Another user's
/// servable on the same pilot keeps answering meanwhile and afterwards.
extension ClusterServingTests {
    @Suite struct ForkBombTests {
        init() throws {
            try TestUsers.require()
            try DevCluster.require()
        }

        @Test func aForkBombIsRefusedAndAnotherUsersServableKeepsAnswering() async throws {
            let h = try await ServingHarness(pools: [ServingHarness.pool("cpu", max: 1)])
            defer { h.stop() }
            let alice = APIClient(url: h.service.url)
            try await alice.login(as: TestUsers.alice)
            let bob = APIClient(url: h.service.url)
            try await bob.login(as: TestUsers.bob)
            let victim = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "steady", function: "behave", input: ["type": "string"], output: ["type": "string"])
            #expect(try await alice.send("POST", "/v1/servables", body: try ServingFixtures.archive(directory: victim)).status == 201)
            #expect(try await alice.run("alice/steady", ["input": "before"]).json["output"] == "BEFORE")

            let bomb = try ServingFixtures.pythonModule(
                in: h.work.path, name: "forkbomb", module: "bomb",
                code: """
                    import os, signal, time

                    def bomb(x):
                        kids = []
                        try:
                            while len(kids) < 20000:
                                pid = os.fork()
                                if pid == 0:
                                    time.sleep(60)
                                    os._exit(0)
                                kids.append(pid)
                            result = "never refused after %d" % len(kids)
                        except OSError as e:
                            result = "refused after %d: %s" % (len(kids), e.strerror)
                        for pid in kids:
                            os.kill(pid, signal.SIGKILL)
                        for pid in kids:
                            os.waitpid(pid, 0)
                        return result
                    """,
                function: "bomb", timeout: 120)
            #expect(try await bob.send("POST", "/v1/servables", body: try ServingFixtures.archive(directory: bomb)).status == 201)

            // alice keeps asking while bob's servable forks.
            let steady = Task {
                var answers: [JSONValue] = []
                for i in 0..<20 {
                    answers.append(try await alice.run("alice/steady", ["input": .string("during\(i)")]).json["output"] ?? .null)
                    try await Task.sleep(for: .milliseconds(200))
                }
                return answers
            }
            let exploded = try await bob.run("bob/forkbomb", ["input": "go"], wait: 120)
            let answer = exploded.json["output"]?.stringValue ?? ""
            let error = exploded.json["error"]?.stringValue ?? ""
            if answer.isEmpty {
                #expect(exploded.json["status"] == "failed", "\(exploded.json)")
                #expect(error.contains("more than the 128 processes and threads a worker may run"), "\(exploded.json)")
            } else {
                #expect(answer.hasPrefix("refused after "), "\(exploded.json)")
                let forked = Int(answer.dropFirst("refused after ".count).prefix { $0.isNumber }) ?? 0
                #expect(forked > 0 && forked < 1024 + 64 * 8, "stopped by the limit, not by the loop: \(answer)")
            }
            let answers = try await steady.value
            #expect(answers == (0..<20).map { .string("DURING\($0)") })
            #expect(try await alice.run("alice/steady", ["input": "after"]).json["output"] == "AFTER")
            print("fork bomb: \(answer.isEmpty ? error : answer)")
        }
    }
}
