import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// Restarts that keep pilots warm, on the local cluster: dlhubd stopped (gracefully for an
/// upgrade, or with SIGKILL) and started again while its pilot job runs. The pilot keeps its
/// workers, finds the restarted service's new port in the address file, proves itself again with
/// its job's secret, and the next request is answered by the same Slurm job and the same worker
/// process, with no new submission. Pilot jobs still pending at a crash are cancelled at start.
extension ClusterServingTests {
    @Suite struct WarmRestartTests {
        init() throws { try DevCluster.require() }

        static let keep: [String: JSONValue] = ["pilots_on_stop": "keep", "pilot_reconnect_grace_seconds": 120]

        @Test(.timeLimit(.minutes(5)))
        func aStopAndACrashKeepThePilotAndItsWorkerAndLoseNothing() async throws {
            let dir = try TemporaryDirectory("dlhub-warm-restart")
            let pools = [ServingHarness.pool("warm", idle: 600)]
            var h = try await ServingHarness(pools: pools, directory: dir, extraConfig: Self.keep)
            let tag = h.tag
            let work = h.work
            defer {
                h.stop()
                _ = try? DevCluster.command("scancel", ["-n", "dlhub-pilot-warm-\(tag)"])
            }
            let fixture = try ServingFixtures.pythonFunctions(
                in: work.path, name: "pids", function: "pid", input: ["type": "integer"], output: ["type": "integer"])
            let id = try await h.publish(fixture)
            let first = try await h.api.run(id, ["input": 1], wait: 120)
            let pid = try #require(first.json["output"]?.intValue, "\(first.json)")
            let job = try #require(try h.slurmJobs(pool: "warm").first { $0.state == "RUNNING" })

            // A graceful stop, as for an upgrade: the pilot job keeps running.
            h.stop()
            #expect(!h.service.stopTimedOut, "a stop that keeps pilots still ends")
            #expect(h.service.log.contains("leaving running pilot jobs for the next start"), "\(h.service.log.suffix(2000))")
            #expect(try h.slurmJobs(pool: "warm").first { $0.id == job.id }?.state == "RUNNING")
            h = try await ServingHarness(pools: pools, directory: dir, extraConfig: Self.keep, tag: tag)
            let afterStop = try await h.api.run(id, ["input": 2], wait: 60)
            #expect(afterStop.json["output"]?.intValue == pid, "the same worker process answers: \(afterStop.json)")
            #expect(try await h.metric("dlhub_pilot_submissions_total") == 0, "no new pilot job")
            #expect(try h.slurmJobs(pool: "warm").map(\.id) == [job.id])
            let pilots = try await h.pilots()
            #expect(pilots.first?["why"]?.stringValue?.hasPrefix("adopted after a service restart") == true, "\(pilots)")

            // A crash (SIGKILL) with tasks accepted, some of them running on the pilot.
            var tasks: [String] = []
            for i in 0..<6 {
                let reply = try await h.api.send(
                    "POST", "/v1/servables/\(id)/run", json: ["input": .int(Int64(i)), "parameters": ["delay": 0.5]])
                #expect(reply.status == 202, "\(reply.json)")
                if let task = reply.json["id"]?.stringValue { tasks.append(task) }
            }
            try await Task.sleep(for: .milliseconds(300))
            h.service.kill()
            h = try await ServingHarness(pools: pools, directory: dir, extraConfig: Self.keep, tag: tag)
            for task in tasks {
                let done = try await h.api.send("GET", "/v1/tasks/\(task)?wait=60")
                #expect(done.json["status"] == "completed" && done.json["output"]?.intValue != nil, "\(done.json)")
            }
            let afterCrash = try await h.api.run(id, ["input": 3], wait: 60)
            #expect(afterCrash.json["output"]?.intValue != nil)
            #expect(try await h.metric("dlhub_pilot_submissions_total") == 0, "no new pilot job after the crash either")
            #expect(try h.slurmJobs(pool: "warm").map(\.id) == [job.id], "one Slurm job served all of it")
            let pilotLog = try String(contentsOfFile: h.service.registry + "/.pilot-logs/pilot-\(job.id).out", encoding: .utf8)
            #expect(pilotLog.contains("keeping the workers and reconnecting"), "\(pilotLog.suffix(3000))")
        }

        @Test(.timeLimit(.minutes(5)))
        func aPilotJobStillPendingAtACrashIsCancelledAtStartAndItsRequestStillAnswered() async throws {
            let dir = try TemporaryDirectory("dlhub-warm-pending")
            let pools = [ServingHarness.pool("later", partition: "queued")]
            var h = try await ServingHarness(pools: pools, directory: dir, extraConfig: Self.keep)
            let tag = h.tag
            defer {
                h.stop()
                _ = try? DevCluster.command("scancel", ["-n", "dlhub-pilot-later-\(tag)"])
            }
            let fixture = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "patient", function: "behave", input: ["type": "string"], output: ["type": "string"])
            let id = try await h.publish(fixture)
            let accepted = try await h.api.send("POST", "/v1/servables/\(id)/run", json: ["input": "later"])
            let task = try #require(accepted.json["id"]?.stringValue, "\(accepted.json)")
            var pending: ServingHarness.SlurmJob?
            for _ in 0..<40 where pending == nil {
                pending = try h.slurmJobs(pool: "later").first { $0.state == "PENDING" }
                if pending == nil { try await Task.sleep(for: .milliseconds(250)) }
            }
            let old = try #require(pending, "a pilot job waits in the queued partition")
            h.service.kill()
            h = try await ServingHarness(pools: pools, directory: dir, extraConfig: Self.keep, tag: tag)
            var state = ""
            for _ in 0..<40 where state != "CANCELLED" {
                state = try h.slurmJobs(pool: "later").first { $0.id == old.id }?.state ?? "gone"
                if state != "CANCELLED" { try await Task.sleep(for: .milliseconds(250)) }
            }
            #expect(state == "CANCELLED", "the job pending at the crash is cancelled at start")
            // Its request was accepted: the restarted service's own pilot answers it.
            let done = try await h.api.send("GET", "/v1/tasks/\(task)?wait=120")
            #expect(done.json["output"] == "LATER", "\(done.json)")
        }
    }
}

extension ClusterServingTests.WarmRestartTests {
    /// While the service is away, someone else takes the port its pilots knew and plays the
    /// service: one peer sends work before any proof, the next a welcome with a wrong proof. The
    /// pilot takes nothing from either, keeps its workers, and goes on trying until the real
    /// service is back; then the same worker answers.
    @Test(.timeLimit(.minutes(5)))
    func aPilotReconnectingToAnImpostorTakesNothingFromItAndWaitsForTheRealService() async throws {
        let dir = try TemporaryDirectory("dlhub-warm-impostor")
        let pools = [ServingHarness.pool("warm", idle: 600)]
        var h = try await ServingHarness(pools: pools, directory: dir, extraConfig: Self.keep)
        let tag = h.tag
        defer {
            h.stop()
            _ = try? DevCluster.command("scancel", ["-n", "dlhub-pilot-warm-\(tag)"])
        }
        let fixture = try ServingFixtures.pythonFunctions(
            in: h.work.path, name: "pids", function: "pid", input: ["type": "integer"], output: ["type": "integer"])
        let id = try await h.publish(fixture)
        let pid = try #require(try await h.api.run(id, ["input": 1], wait: 120).json["output"]?.intValue)
        let job = try #require(try h.slurmJobs(pool: "warm").first { $0.state == "RUNNING" })
        let addressFile = h.service.registry + "/.pilot-logs/service-address"
        let address = try String(contentsOfFile: addressFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let oldPort = try #require(Int(address.split(separator: ":").last ?? ""))
        h.stop()

        // The impostor on the port the pilot knows (the address file still names it).
        let (impostor, _) = try RawSocket.listen(port: oldPort)
        let early = try impostor.accept(timeout: 30)
        guard case .hello(let hello)? = early.nextFrame(timeout: 10) else { throw TestSetupError("no hello from the pilot") }
        #expect(hello.jobID == job.id)
        #expect(hello.resident.count == 1, "the reconnecting pilot lists its resident servable: \(hello.resident)")
        try? early.send(.batch(Batch(id: 1, key: hello.resident.first ?? "x", parameters: [], timeoutSeconds: 5, items: [])))
        #expect(early.nextFrame(timeout: 5) == nil, "nothing back for a batch sent before any proof")
        let second = try impostor.accept(timeout: 30)
        guard case .hello(let hello2)? = second.nextFrame(timeout: 10) else { throw TestSetupError("no second hello") }
        try? second.send(.welcome(PilotWelcome(session: 9, pool: hello2.pool, nonce: PilotProof.random(), proof: PilotProof.random())))
        #expect(second.nextFrame(timeout: 5) == nil, "no authenticate for a wrong proof")
        _ = impostor  // closed below, when the real service comes back on a new port

        h = try await ServingHarness(pools: pools, directory: dir, extraConfig: Self.keep, tag: tag)
        let again = try await h.api.run(id, ["input": 2], wait: 60)
        #expect(again.json["output"]?.intValue == pid, "the same worker, through the impostor episode: \(again.json)")
        #expect(try await h.metric("dlhub_pilot_submissions_total") == 0)
        let pilotLog = try String(contentsOfFile: h.service.registry + "/.pilot-logs/pilot-\(job.id).out", encoding: .utf8)
        #expect(pilotLog.contains("reconnection refused"), "\(pilotLog.suffix(3000))")
        #expect(!pilotLog.contains("results of a batch"), "the impostor's batch never ran")
    }
}
