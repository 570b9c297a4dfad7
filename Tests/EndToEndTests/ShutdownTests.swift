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
}
