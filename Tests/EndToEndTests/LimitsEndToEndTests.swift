import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// Quotas, bounded batches and frames, and what one user can learn of another's work.
extension ClusterServingTests {
    @Suite struct LimitsEndToEndTests {
        init() throws {
            try TestUsers.require()
            try DevCluster.require()
        }

        func users(_ h: ServingHarness) async throws -> (APIClient, APIClient) {
            let alice = APIClient(url: h.service.url, connections: 64)
            try await alice.login(as: TestUsers.alice)
            let bob = APIClient(url: h.service.url)
            try await bob.login(as: TestUsers.bob)
            return (alice, bob)
        }

        @Test func aUserOverQuotaGets429WhileAnotherIsServed() async throws {
            let h = try await ServingHarness(pools: [ServingHarness.pool("cpu", max: 1)], extraConfig: ["max_queued_items_per_user": 200])
            defer { h.stop() }
            let (alice, bob) = try await users(h)
            let id = try await h.publish(
                try ServingFixtures.pythonFunctions(
                    in: h.work.path, name: "doubler", function: "slow", input: ["type": "integer"], output: ["type": "integer"],
                    maxBatchSize: 8))
            #expect(try await bob.run(id, ["input": 1]).json["output"] == 2)  // the pilot is up
            // alice floods: 100 inputs at a time, each slow.
            var statuses: [Int] = []
            var retryAfter = false
            for _ in 0..<4 {
                let reply = try await alice.send(
                    "POST", "/v1/servables/\(id)/run",
                    json: ["inputs": .array((0..<100).map { .int(Int64($0)) }), "parameters": ["delay": 0.2]])
                statuses.append(reply.status)
                if reply.status == 429 {
                    #expect(reply.errorMessage.contains("the limit is 200 inputs"), "\(reply.json)")
                    retryAfter = true
                }
            }
            #expect(statuses == [202, 202, 429, 429], "\(statuses)")
            #expect(retryAfter)
            // bob is not held to alice's quota, and is answered meanwhile.
            var latencies: [Double] = []
            for i in 0..<5 {
                let start = Date()
                #expect(try await bob.run(id, ["input": .int(Int64(i))], wait: 300).json["output"] == .int(Int64(2 * i)))
                latencies.append(Date().timeIntervalSince(start))
            }
            print("bob's latencies while alice is over quota (s): \(latencies.map { String(format: "%.3f", $0) })")
        }

        @Test func anOutputTooLargeForAFrameFailsAloneAndThePilotServesOn() async throws {
            let h = try await ServingHarness(pools: [ServingHarness.pool("cpu", max: 1)], extraConfig: ["max_pilot_frame_bytes": 1_000_000])
            defer { h.stop() }
            let (alice, bob) = try await users(h)
            let id = try await h.publish(
                try ServingFixtures.pythonModule(
                    in: h.work.path, name: "big", module: "big", code: "def run(n):\n    return 'x' * n\n", function: "run",
                    input: ["type": "integer"], output: ["type": "string"]))
            #expect(try await bob.run(id, ["input": 3]).json["output"] == "xxx")
            let jobs = try h.slurmJobs(pool: "cpu").map(\.id)
            async let bobs = bob.run(id, ["inputs": [4, 5]])
            let mixed = try await alice.run(id, ["inputs": [10, 2_000_000, 20]])
            let outputs = mixed.json["outputs"]?.arrayValue ?? []
            #expect(outputs.count == 3 && outputs[0] == .string(String(repeating: "x", count: 10)))
            #expect(outputs.count == 3 && outputs[2] == .string(String(repeating: "x", count: 20)))
            let errors = mixed.json["errors"]?.arrayValue ?? []
            let error = errors.count == 3 ? errors[1].stringValue ?? "" : ""
            #expect(error.contains("more than a pilot may send"), "\(mixed.json["errors"] ?? .null)")
            #expect(try await bobs.json["outputs"] == ["xxxx", "xxxxx"])
            #expect(try await bob.run(id, ["input": 2]).json["output"] == "xx")
            #expect(try h.slurmJobs(pool: "cpu").filter { $0.state == "RUNNING" }.map(\.id) == jobs, "the pilot survived")
        }

        @Test func bobLearnsNothingOfAlicesPrivateWork() async throws {
            let h = try await ServingHarness(pools: [ServingHarness.pool("cpu", max: 1)])
            defer { h.stop() }
            let (alice, bob) = try await users(h)
            // alice/tagger@1 is public; @2 is hers alone, and resident on the pilot.
            let dir = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "tagger", function: "behave", input: ["type": "string"], output: ["type": "string"],
                deterministic: true)
            #expect(try await alice.send("POST", "/v1/servables", body: try ServingFixtures.archive(directory: dir)).status == 201)
            var doc = try JSONValue.parse(Array(FileManager.default.contents(atPath: dir + "/servable.json")!))
            doc = doc.setting(["dlhub", "visible_to"], to: ["user:alice"])
            _ = FileManager.default.createFile(atPath: dir + "/servable.json", contents: Data(doc.encoded()))
            #expect(try await alice.send("POST", "/v1/servables", body: try ServingFixtures.archive(directory: dir)).status == 201)
            #expect(try await alice.run("alice/tagger@2", ["input": "secret quark"]).json["output"] == "SECRET QUARK")

            // The pilot table: the private version is "private" to bob, named to alice.
            func resident(_ client: APIClient) async throws -> [String] {
                let report = try await client.send("GET", "/v1/pilots").json
                return (report["pools"]?.arrayValue ?? []).flatMap { $0["pilots"]?.arrayValue ?? [] }.flatMap {
                    ($0["resident"]?.arrayValue ?? []).compactMap(\.stringValue)
                }
            }
            #expect(try await resident(alice).contains("alice/tagger@2"))
            let bobSees = try await resident(bob)
            #expect(!bobSees.contains { $0.contains("tagger@2") } && bobSees.contains("private"), "\(bobSees)")
            // owner/name is the newest version bob may see, and describe lists only those.
            let described = try await bob.send("GET", "/v1/servables/alice/tagger").json
            #expect(described["version"] == 1, "\(described)")
            #expect(described["versions"] == [1])
            #expect(try await bob.run("alice/tagger", ["input": "x"]).json["output"] == "X")
            #expect(try await bob.send("GET", "/v1/servables/alice/tagger@2").status == 404)
            // The cache is per caller: alice's input does not come back faster, or differently, for bob.
            func hits() async throws -> Int { try await h.metric("dlhub_cache_hits_total") }
            #expect(try await alice.run("alice/tagger@1", ["input": "who else asked"]).json["output"] == "WHO ELSE ASKED")
            let before = try await hits()
            let bobs = try await bob.send("POST", "/v1/servables/alice/tagger@1/run", json: ["input": "who else asked"])
            #expect(bobs.status == 202, "a miss for bob, as if nobody had asked: \(bobs.json)")
            #expect(try await hits() == before)
            #expect(try await alice.run("alice/tagger@1", ["input": "who else asked"]).json["output"] == "WHO ELSE ASKED")
            #expect(try await hits() == before + 1, "alice's own repeat is a hit")
            // alice's task: not bob's to read or wait on; the refusal does not wait.
            let task = try #require(
                try await alice.send("POST", "/v1/servables/alice/tagger@2/run", json: ["input": "y"]).json["id"]?.stringValue)
            #expect(try await bob.send("GET", "/v1/tasks/\(task)").status == 404)
            let start = Date()
            #expect(try await bob.send("GET", "/v1/tasks/\(task)?wait=30").status == 404)
            #expect(Date().timeIntervalSince(start) < 10)
        }

        @Test func aSlowLoadingServableDoesNotHoldUpAnotherOnTheSamePilot() async throws {
            let h = try await ServingHarness(pools: [ServingHarness.pool("cpu", max: 1)])
            defer { h.stop() }
            let fast = try await h.publish(
                try ServingFixtures.pythonFunctions(
                    in: h.work.path, name: "fast", function: "behave", input: ["type": "string"], output: ["type": "string"]))
            let slow = try await h.publish(
                try ServingFixtures.pythonModule(
                    in: h.work.path, name: "slowload", module: "slowload", code: "import time\ntime.sleep(12)\ndef run(x):\n    return x\n",
                    function: "run"))
            #expect(try await h.api.run(fast, ["input": "warm"]).json["output"] == "WARM")
            let slowDone = LockedFlag()
            let slowRun = Task {
                let reply = try await h.api.run(slow, ["input": "patient"], wait: 120)
                slowDone.set()
                return reply
            }
            try await Task.sleep(for: .seconds(1))  // its load is under way on the pilot
            for word in ["a", "b", "c"] {
                #expect(try await h.api.run(fast, ["input": .string(word)]).json["output"] == .string(word.uppercased()))
            }
            #expect(!slowDone.value, "the fast servable was answered while the slow one was still loading")
            #expect(try await slowRun.value.json["output"] == "patient")
        }

        @Test func hostileRequestsGetTheir4xxAndTheServiceStaysUp() async throws {
            let h = try await ServingHarness(pools: [ServingHarness.pool("cpu", max: 1)], extraConfig: ["max_run_request_bytes": 1_000_000])
            defer { h.stop() }
            let (alice, bob) = try await users(h)
            let id = try await h.publish(
                try ServingFixtures.pythonFunctions(
                    in: h.work.path, name: "echo", function: "behave", input: ["type": "string"], output: ["type": "string"]))
            let task = try #require(
                try await alice.send("POST", "/v1/servables/\(id)/run", json: ["input": "mine"]).json["id"]?.stringValue)
            let cases: [(String, String, String, [UInt8]?, String?, Int)] = [
                (
                    "deeply nested input", "POST", "/v1/servables/\(id)/run",
                    Array(("{\"input\": " + String(repeating: "[", count: 100_000)).utf8), nil, 400
                ),
                (
                    "run body over the limit", "POST", "/v1/servables/\(id)/run",
                    Array(("{\"input\": \"" + String(repeating: "a", count: 2_000_000) + "\"}").utf8), nil, 413
                ),
                ("wait beyond Double", "POST", "/v1/servables/\(id)/run?wait=1e309", Array(#"{"input": "x"}"#.utf8), nil, 400),
                ("negative wait", "POST", "/v1/servables/\(id)/run?wait=-1", Array(#"{"input": "x"}"#.utf8), nil, 400),
                ("wait that is not a number", "GET", "/v1/tasks/\(task)?wait=soon", nil, nil, 400),
                (
                    "parameters not an object", "POST", "/v1/servables/\(id)/run", Array(#"{"input": "x", "parameters": "rm -rf"}"#.utf8),
                    nil, 400
                ),
                ("inputs not a list", "POST", "/v1/servables/\(id)/run", Array(#"{"inputs": "x"}"#.utf8), nil, 400),
                ("input and inputs", "POST", "/v1/servables/\(id)/run", Array(#"{"input": "x", "inputs": ["y"]}"#.utf8), nil, 400),
                ("input of the wrong type", "POST", "/v1/servables/\(id)/run", Array(#"{"input": 12}"#.utf8), nil, 400),
                ("run body not JSON", "POST", "/v1/servables/\(id)/run", Array("\u{0}\u{1}garbage".utf8), nil, 400),
                ("search limit beyond Int64", "GET", "/v1/servables?limit=99999999999999999999", nil, nil, 400),
                ("search limit zero", "GET", "/v1/servables?limit=0", nil, nil, 400),
                ("10 KB of munge garbage", "GET", "/v1/whoami", nil, "Munge " + String(repeating: "A", count: 10_000), 401),
                ("forged bearer token", "GET", "/v1/whoami", nil, "Bearer eyJ1aWQiOjB9.AAAA", 401),
                ("unknown scheme", "GET", "/v1/whoami", nil, "Basic cm9vdDpyb290", 401),
                ("another user's task", "GET", "/v1/tasks/\(task)", nil, "bob", 404),
                ("waiting on another user's task", "GET", "/v1/tasks/\(task)?wait=30", nil, "bob", 404),
                ("a path of 10,000 characters", "GET", "/v1/servables/" + String(repeating: "x", count: 10_000), nil, nil, 400),
                ("withdrawing another user's servable", "DELETE", "/v1/servables/\(id)", nil, "bob", 403),
                ("publishing as someone else", "POST", "/v1/servables?owner=alice", Array("x".utf8), "bob", 403),
            ]
            for (label, method, path, body, auth, status) in cases {
                let authorization: String?
                switch auth {
                case "bob": authorization = "Bearer " + (bob.token ?? "")
                case let header?: authorization = header
                case nil: authorization = nil
                }
                let start = Date()
                let reply = try await alice.send(method, path, body: body, authorization: authorization)
                #expect(reply.status == status, "\(label): \(reply.status) \(reply.json)")
                #expect(reply.json["error"]?["message"]?.stringValue?.isEmpty == false, "\(label): no error document")
                #expect(Date().timeIntervalSince(start) < 20, "\(label) was made to wait")
                #expect(try await alice.send("GET", "/healthz").status == 200, "after \(label)")
            }
            #expect(try await alice.run(id, ["input": "still here"]).json["output"] == "STILL HERE")
        }
    }
}
