import DLHubCluster
import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// One user does not decide how many workers a node runs (issue 17, finding 5).
extension ClusterServingTests {
    @Suite struct FairSharingTests {
        init() throws {
            try TestUsers.require()
            try DevCluster.require()
        }

        /// Python workers running on this machine (every node of the dev cluster is local): the shim
        /// is `/dlhub/worker.py` inside a sandbox, `dlhub_worker.py` outside one.
        static func workerCount() throws -> Int {
            let out = try Subprocess.run("/usr/bin/ps", ["-eo", "comm=,args="]).stdout
            return out.split(separator: "\n").filter { $0.hasPrefix("python") && $0.contains("worker.py") }.count
        }

        /// The most workers seen at once, sampled every 50 ms until the task is cancelled.
        static func mostWorkers() -> Task<Int, Never> {
            Task {
                var most = 0
                while !Task.isCancelled {
                    most = max(most, (try? workerCount()) ?? 0)
                    try? await Task.sleep(for: .milliseconds(50))
                }
                return most
            }
        }

        /// Found from outside: 60 requests with 60 different `parameters` objects put 30 Python
        /// workers on 2 pilots whose limit was 8 each, and one of the 60 failed. Each parameter set
        /// was its own queue key and its own resident worker, and a load under way did not count.
        @Test func distinctParametersNeverMintWorkersPastThePilotsLimit() async throws {
            let perPilot = 3
            let h = try await ServingHarness(
                pools: [ServingHarness.pool("cpu", max: 2, extra: ["max_workers_per_pilot": .int(Int64(perPilot))])])
            defer { h.stop() }
            let id = try await h.publish(
                try ServingFixtures.pythonModule(
                    in: h.work.path, name: "scaled", module: "scaled",
                    code: "import time\ndef run(x, scale=1):\n    time.sleep(0.05)\n    return x * scale\n", function: "run",
                    input: ["type": "integer"], output: ["type": "integer"]))
            let before = try Self.workerCount()
            let watching = Self.mostWorkers()
            let count = 60
            let outputs = try await withThrowingTaskGroup(of: (Int, APIClient.Reply).self) { group in
                for i in 1...count {
                    group.addTask { (i, try await h.api.run(id, ["input": 7, "parameters": ["scale": .int(Int64(i))]], wait: 120)) }
                }
                var all: [(Int, APIClient.Reply)] = []
                for try await r in group { all.append(r) }
                return all
            }
            watching.cancel()
            let most = await watching.value - before
            for (i, reply) in outputs {
                #expect(reply.json["output"]?.intValue == Int64(7 * i), "scale \(i): \(reply.status) \(reply.json)")
            }
            print("fair sharing: at most \(most) workers for 60 parameter sets")
            let pilots = try await h.pilots().count
            #expect(pilots >= 1 && pilots <= 2)
            #expect(most <= perPilot * 2, "\(most) workers ran on \(pilots) pilots whose limit is \(perPilot) each")
        }

        /// Loads run side by side on a pilot (a load must not hold up the frames behind it) and did
        /// not count: a dozen servables asked for at once started a dozen workers on a pilot whose
        /// limit is 2. A load now takes a slot at the service and a place under the pilot's limit;
        /// one that does not fit waits for a worker to free up, and every request is answered.
        @Test func loadsCountAgainstTheWorkerLimitAndOnesThatDoNotFitWait() async throws {
            let perPilot = 2
            let h = try await ServingHarness(
                pools: [ServingHarness.pool("cpu", max: 1, extra: ["max_workers_per_pilot": .int(Int64(perPilot))])])
            defer { h.stop() }
            var ids: [String] = []
            for n in 0..<12 {
                ids.append(
                    try await h.publish(
                        try ServingFixtures.pythonModule(
                            in: h.work.path, name: "many\(n)", module: "many\(n)",
                            code: "import time\ntime.sleep(0.3)\ndef run(x):\n    return x + \(n)\n", function: "run",
                            input: ["type": "integer"], output: ["type": "integer"])))
            }
            // A pilot first, so that every load goes to it at once.
            #expect(try await h.api.run(ids[0], ["input": 1], wait: 120).json["output"] == 1)
            let before = try Self.workerCount() - 1
            let watching = Self.mostWorkers()
            let outputs = try await withThrowingTaskGroup(of: (Int, APIClient.Reply).self) { group in
                for (n, id) in ids.enumerated() { group.addTask { (n, try await h.api.run(id, ["input": 100], wait: 120)) } }
                var all: [(Int, APIClient.Reply)] = []
                for try await r in group { all.append(r) }
                return all
            }
            watching.cancel()
            let most = await watching.value - before
            print("fair sharing: at most \(most) workers for 12 servables loaded at once")
            for (n, reply) in outputs { #expect(reply.json["output"]?.intValue == Int64(100 + n), "many\(n): \(reply.json)") }
            #expect(most <= perPilot, "\(most) workers ran on a pilot whose limit is \(perPilot)")
        }

        /// Found by reading the planner: the items of a queue went first in, first out, so one
        /// user's long request stood in front of every other user of the same servable. Now the
        /// users of a queue share each batch: bob's one input is answered while most of alice's
        /// 400 are still waiting.
        @Test func oneUsersLongRequestDoesNotStarveAnotherUserOfTheSameServable() async throws {
            let h = try await ServingHarness(pools: [ServingHarness.pool("cpu", max: 1)])
            defer { h.stop() }
            let alice = APIClient(url: h.service.url)
            try await alice.login(as: TestUsers.alice)
            let bob = APIClient(url: h.service.url)
            try await bob.login(as: TestUsers.bob)
            let dir = try ServingFixtures.pythonModule(
                in: h.work.path, name: "steady", module: "steady",
                code: "import time\ndef run(x):\n    time.sleep(0.05)\n    return x + 1\n",
                function: "run", input: ["type": "integer"], output: ["type": "integer"], maxBatchSize: 4)
            #expect(try await alice.publish(directory: dir).status == 201)
            #expect(try await alice.run("alice/steady", ["input": 0], wait: 120).json["output"] == 1, "a resident worker first")
            let long = try await alice.send(
                "POST", "/v1/servables/alice/steady/run?wait=0", json: ["inputs": .array((0..<400).map { .int(Int64($0)) })])
            guard let task = long.json["id"]?.stringValue else {
                Issue.record("alice's request was not accepted: \(long.json)")
                return
            }
            let answer = try await bob.run("alice/steady", ["input": 41], wait: 120)
            let left = try await alice.send("GET", "/v1/tasks/\(task)").json["remaining"]?.intValue ?? -1
            print("fair sharing: bob answered with \(left) of alice's 400 inputs still waiting")
            #expect(answer.json["output"] == 42, "\(answer.json)")
            #expect(left > 200, "bob waited behind alice's request: \(left) of her 400 inputs were left when he was answered")
            var done = try await alice.send("GET", "/v1/tasks/\(task)?wait=30").json
            let deadline = Date().addingTimeInterval(300)
            while !TaskDocument.finishedStatuses.contains(done["status"]?.stringValue ?? ""), Date() < deadline {
                done = try await alice.send("GET", "/v1/tasks/\(task)?wait=30").json
            }
            #expect(done["status"] == "completed", "\(done["status"] ?? .null)")
        }

        /// Found by reading the environment store: builds started first come, first served, two
        /// at a time, so a user who published six servables with their own dependencies kept
        /// another user's one build waiting behind all six. Users now take turns for the build
        /// slots: bob's starts at the first free one.
        @Test func oneUsersManyEnvironmentBuildsDoNotStandInFrontOfAnotherUsersOne() async throws {
            let wheels =
                (0..<6).map {
                    LocalPackageIndex.Wheel(name: "dlhub-test-a\($0)", version: "1.0", files: ["dlhub_test_a\($0).py": "x = \($0)\n"])
                }
                + [LocalPackageIndex.Wheel(name: "dlhub-test-b0", version: "1.0", files: ["dlhub_test_b0.py": "x = 0\n"])]
            let index = try LocalPackageIndex(delay: 1.5, wheels: wheels)
            defer { index.stop() }
            let h = try await ServingHarness(
                pools: [ServingHarness.pool("cpu", max: 1)], extraConfig: ["package_index": .string(index.url)])
            defer { h.stop() }
            let alice = APIClient(url: h.service.url)
            try await alice.login(as: TestUsers.alice)
            let bob = APIClient(url: h.service.url)
            try await bob.login(as: TestUsers.bob)
            for n in 0..<6 {
                let dir = try ServingFixtures.pythonModule(
                    in: h.work.path, name: "needs\(n)", module: "needs\(n)", code: "def run(x):\n    return x\n", function: "run",
                    dependencies: ["dlhub-test-a\(n)": "1.0"])
                #expect(try await alice.publish(directory: dir).status == 201)
            }
            let mine = try ServingFixtures.pythonModule(
                in: h.work.path, name: "bobs", module: "bobs", code: "def run(x):\n    return x\n", function: "run",
                dependencies: ["dlhub-test-b0": "1.0"])
            #expect(try await bob.publish(directory: mine).status == 201)
            // The order in which the seven environments become ready.
            var order: [String] = []
            let deadline = Date().addingTimeInterval(300)
            while order.count < 7, Date() < deadline {
                let listed = try await h.api.send("GET", "/v1/environments").json["environments"]?.arrayValue ?? []
                for env in listed where env["state"] != "building" {
                    let package = env["packages"]?.arrayValue?.first?.stringValue ?? "?"
                    if !order.contains(package) { order.append(package) }
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            print("fair sharing: environments ready in the order \(order)")
            #expect(order.count == 7, "\(order)")
            let position = order.firstIndex(of: "dlhub-test-b0==1.0") ?? 7
            #expect(position < 5, "bob's one build waited behind alice's: \(order)")
        }
    }
}
