import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// A stop never hangs, whatever Slurm does: with the controller unreachable (every libslurm call
/// takes about 9 s to fail), SIGTERM ends dlhubd within 15 s, and what it had accepted is
/// answered after the next start.
@Suite struct ShutdownTests {
    init() throws {
        try TestUsers.require()
        try DevCluster.require()
    }

    @Test func sigtermWithTheControllerUnreachableEndsWithinFifteenSecondsAndLosesNothing() async throws {
        let directory = try TemporaryDirectory("dlhub-shutdown")
        let conf = ProcessInfo.processInfo.environment["SLURM_CONF"] ?? DevCluster.defaultConf
        // The same cluster, but a controller port nobody listens on.
        let dead = directory.file("slurm-unreachable.conf")
        let text = try String(contentsOfFile: conf, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasPrefix("SlurmctldPort=") ? "SlurmctldPort=1" : String($0) }.joined(separator: "\n")
        try text.write(toFile: dead, atomically: true, encoding: .utf8)
        chmod(dead, 0o644)
        let tag = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let config: JSONValue = [
            "pools": [ServingHarness.pool("cpu").setting(["name"], to: .string("cpu-\(tag)"))], "result_retention_seconds": 3600,
        ]
        let first = try LiveService(directory: directory, config: config, environment: ["SLURM_CONF": dead])
        let api = APIClient(url: first.url)
        try await api.login()
        let work = try TemporaryDirectory("dlhub-shutdown-work")
        let dir = try ServingFixtures.pythonFunctions(
            in: work.path, name: "patient", function: "behave", input: ["type": "string"], output: ["type": "string"])
        let published = try await api.publish(directory: dir)
        let id = "\(published.json["id"]?.stringValue ?? "")@\(published.json["version"]?.intValue ?? 0)"
        let accepted = try await api.send("POST", "/v1/servables/\(id)/run?wait=0", json: ["input": "kept"])
        #expect(accepted.status == 202)
        let task = try #require(accepted.json["id"]?.stringValue)
        // The pilot manager is now stuck in a submission that will take seconds to fail.
        try await Task.sleep(for: .seconds(2))

        let started = Date()
        first.stop()
        let took = Date().timeIntervalSince(started)
        print("dlhubd stopped \(String(format: "%.1f", took)) s after SIGTERM with the controller unreachable")
        #expect(took < 15, "dlhubd took \(Int(took)) s to stop after SIGTERM with the controller unreachable")

        // Restarted against the reachable controller: the accepted task is served.
        let second = try LiveService(directory: directory, config: config)
        defer { second.stop() }
        let again = APIClient(url: second.url)
        try await again.login()
        var reply = try await again.send("GET", "/v1/tasks/\(task)?wait=60")
        for _ in 0..<4 where reply.status == 202 { reply = try await again.send("GET", "/v1/tasks/\(task)?wait=60") }
        #expect(reply.json["output"] == "KEPT", "\(reply.json)")
    }

    /// Found by the soak (`benchmarks/soak.md`): a graceful stop waited for the longest `?wait=`
    /// in flight, so a request waiting an hour held the stop an hour. A stop now answers every
    /// waiting request at once (202 and its task id, kept in the store for the next start), and
    /// ends within its bound.
    @Test func sigtermAnswersWaitingRequestsAtOnceInsteadOfWaitingThemOut() async throws {
        let tag = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let service = try LiveService(config: [
            // Its pilots wait in Slurm's queue (the dev cluster's "queued" partition): nothing runs
            // before the stop, so both requests are still waiting when it comes.
            "pools": [ServingHarness.pool("queued", partition: "queued").setting(["name"], to: .string("queued-\(tag)"))],
            "result_retention_seconds": 3600,
        ])
        let api = APIClient(url: service.url)
        try await api.login()
        let work = try TemporaryDirectory("dlhub-shutdown-wait")
        // Slower than the wait of the test: every request is still waiting at the SIGTERM.
        let dir = try ServingFixtures.pythonModule(
            in: work.path, name: "unhurried", module: "unhurried", code: "import time\ndef run(x):\n    time.sleep(120)\n    return x\n",
            function: "run", timeout: 300)
        let published = try await api.publish(directory: dir)
        let id = "\(published.json["id"]?.stringValue ?? "")@\(published.json["version"]?.intValue ?? 0)"
        let waiting = Task { try await api.send("POST", "/v1/servables/\(id)/run?wait=600", json: ["input": "x"]) }
        let polling = Task { () -> APIClient.Reply in
            let accepted = try await api.send("POST", "/v1/servables/\(id)/run?wait=0", json: ["input": "y"])
            return try await api.send("GET", "/v1/tasks/\(accepted.json["id"]?.stringValue ?? "")?wait=600")
        }
        try await Task.sleep(for: .seconds(2))
        let started = Date()
        service.stop(within: 30)
        let took = Date().timeIntervalSince(started)
        print("shutdown: stopped \(String(format: "%.1f", took)) s after SIGTERM with two requests waiting up to 600 s")
        #expect(!service.stopTimedOut, "dlhubd did not stop within 30 s of SIGTERM")
        let answered = try await waiting.value
        #expect(answered.status == 202, "\(answered.status) \(answered.json)")
        #expect(answered.json["id"]?.stringValue != nil, "the waiting request was not handed its task id: \(answered.json)")
        let polled = try await polling.value
        #expect(polled.status == 202, "\(polled.status) \(polled.json)")
        #expect(polled.json["status"] == "queued", "\(polled.json)")
    }
}
