import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// Tasks from the terminal: listing one's own, cancelling, waiting.
extension ClusterServingTests {
    @Suite struct TaskManagementTests {
        init() throws {
            try TestUsers.require()
            try DevCluster.require()
        }

        @Test func cancelledInputsNeverRunAndOnlyTheOwnerCanCancel() async throws {
            let h = try await ServingHarness(pools: [ServingHarness.pool("cpu", max: 1)])
            defer { h.stop() }
            let dir = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "slowpoke", function: "slow", input: ["type": "integer"], output: ["type": "integer"],
                maxBatchSize: 1)
            let id = try await h.publish(dir)
            #expect(try await h.api.run(id, ["input": 1]).json["output"] == 2, "a resident worker first")
            func dispatched() async throws -> Int { try await h.metric("dlhub_items_dispatched_total") }
            let before = try await dispatched()
            let count = 200
            let accepted = try await h.api.send(
                "POST", "/v1/servables/\(id)/run",
                json: ["inputs": .array((0..<count).map { .int(Int64($0)) }), "parameters": ["delay": 0.2]])
            #expect(accepted.status == 202)
            let task = try #require(accepted.json["id"]?.stringValue)

            // Another user cannot cancel it, see it, or learn that it exists.
            let bob = APIClient(url: h.service.url)
            try await bob.login(as: TestUsers.bob)
            #expect(try await bob.send("POST", "/v1/tasks/\(task)/cancel").status == 404)
            let bobs = try await bob.send("GET", "/v1/tasks").json["tasks"]?.arrayValue ?? []
            #expect(!bobs.contains { $0["id"]?.stringValue == task })

            // Cancelled once some of it has run.
            let deadline = Date().addingTimeInterval(120)
            while Date() < deadline, (try await h.api.send("GET", "/v1/tasks/\(task)").json["remaining"]?.intValue ?? 0) >= Int64(count) {
                try await Task.sleep(for: .milliseconds(100))
            }
            let cli = try CLI(service: h.service)
            let cancel = try cli.run(as: "root", ["cancel", task])
            #expect(cancel.status == 0, "\(cancel.stderr)")
            #expect(cancel.stdout.contains("\(task): cancelled"), "\(cancel.stdout)")

            let done = try await h.api.send("GET", "/v1/tasks/\(task)?wait=120")
            #expect(done.status == 200)
            #expect(done.json["status"]?.stringValue == "cancelled")
            let outputs = done.json["outputs"]?.arrayValue ?? []
            let errors = done.json["errors"]?.arrayValue ?? []
            let ran = outputs.filter { $0 != .null }.count
            let cancelled = errors.filter { $0.stringValue?.contains("cancelled by root before it ran") == true }.count
            #expect(ran > 0 && cancelled > 0, "ran \(ran), cancelled \(cancelled)")
            #expect(ran + cancelled == count, "every input either ran or was cancelled")
            for (i, output) in outputs.enumerated() where output != .null { #expect(output == .int(Int64(2 * i))) }
            // What was cancelled never reached a pilot: the pilots were sent exactly the inputs that ran.
            #expect(try await dispatched() - before == ran)

            let again = try await h.api.send("POST", "/v1/tasks/\(task)/cancel")
            #expect(again.status == 409)
            #expect(again.json["error"]?["message"]?.stringValue?.contains("already finished") == true)

            // `dlhub tasks` lists it; `dlhub status --wait` prints what it has.
            let list = try cli.run(as: "root", ["tasks"])
            #expect(list.status == 0, "\(list.stderr)")
            let row = list.stdout.split(separator: "\n").first { $0.hasPrefix(task) }
            #expect(row?.contains("cancelled") == true, "\(list.stdout)")
            #expect(row?.contains("\(count)/\(count)") == true, "\(list.stdout)")
            #expect(try cli.run(as: TestUsers.bob, ["cancel", task]).stderr.contains("no task"))

            // A later task of the same servable runs normally.
            let later = try await h.api.send("POST", "/v1/servables/\(id)/run?wait=0", json: ["input": 21])
            let laterID = try #require(later.json["id"]?.stringValue)
            let status = try cli.run(as: "root", ["status", "--wait", laterID])
            #expect(status.status == 0, "\(status.stderr)")
            #expect(status.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "42")
        }

        /// An answer given within the wait and the same answer fetched later from the store read
        /// byte for byte the same where the worker's output is in them: numbers as Python spelled them
        /// (100.0, 2.5e-07), keys in the order it wrote them (docs/requests.md). They used to
        /// differ: the stored task was parsed and written out again.
        @Test func answersReadTheSameWithinTheWaitAndFetchedLater() async throws {
            let h = try await ServingHarness(pools: [ServingHarness.pool("cpu", max: 1)])
            defer { h.stop() }
            let code = """
                def spell(x):
                    return {"z": x / 4, "tiny": x * 1e-7, "whole": 100.0, "big": 1e300, "a": [x, -0.0, "é"]}
                """
            let dir = try ServingFixtures.pythonModule(
                in: h.work.path, name: "speller", module: "speller", code: code, function: "spell", input: ["type": "number"],
                output: ["type": "dict"])
            let id = try await h.publish(dir)
            func output(_ body: [UInt8], member: String) throws -> [UInt8] {
                let text = String(decoding: body, as: UTF8.self)
                let key = "\"\(member)\":"
                let start = try #require(text.range(of: key), "\(text)")
                return Array(String(text[start.upperBound...]).utf8)
            }
            for x in [2.5, 3.0, 1e-3] {
                let live = try await h.api.send("POST", "/v1/servables/\(id)/run?wait=60", json: ["input": .double(x)])
                #expect(live.status == 200, "\(live.json)")
                let accepted = try await h.api.send("POST", "/v1/servables/\(id)/run?wait=0", json: ["input": .double(x)])
                #expect(accepted.status == 202)
                let task = try #require(accepted.json["id"]?.stringValue)
                let stored = try await h.api.send("GET", "/v1/tasks/\(task)?wait=60")
                #expect(stored.status == 200, "\(stored.json)")
                let answer = try output(live.body, member: "output")
                #expect(try output(stored.body, member: "output") == answer, "input \(x)")
                #expect(String(decoding: answer, as: UTF8.self).contains("100.0"), "as Python spelled it")
                // The list says what each task is, not what it answered.
                let listed = try await h.api.send("GET", "/v1/tasks?limit=1").json["tasks"]?.arrayValue?.first
                #expect(listed?["id"]?.stringValue == task && listed?["status"]?.stringValue == "completed")
                #expect(listed?["output"] == nil, "\(String(describing: listed))")
                func keys(_ body: [UInt8]) -> [String] {
                    guard case .object(let members)? = try? JSONValue.parse(body) else { return [] }
                    return members.keys.sorted()
                }
                #expect(keys(live.body) == keys(stored.body))
            }
            // The stored answer parses to the values the function returned.
            let accepted = try await h.api.send("POST", "/v1/servables/\(id)/run?wait=0", json: ["input": 8])
            let task = try #require(accepted.json["id"]?.stringValue)
            let stored = try await h.api.send("GET", "/v1/tasks/\(task)?wait=60")
            let z = stored.json["output"]?["z"]
            #expect(z == JSONValue.double(2) || z == JSONValue.int(2), "\(stored.json)")
            #expect(stored.json["output"]?["a"]?.arrayValue?.last?.stringValue == "\u{e9}")
        }
    }
}
