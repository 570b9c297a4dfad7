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
    }
}
