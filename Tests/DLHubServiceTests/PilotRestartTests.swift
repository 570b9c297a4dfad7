import DLHubCore
import DLHubService
import DLHubTesting
import Foundation
import Testing

/// Restarts that keep pilots warm, through the `SlurmScheduler` seam: the job table a restarted
/// service reads, what it adopts and what it cancels, and what a stop leaves running. The real
/// path (pilots reconnecting to a restarted dlhubd on the local cluster) is `WarmRestartTests`.
@Suite struct PilotRestartTests {
    let helper = PilotManagerTests()

    func keeping(_ dir: TemporaryDirectory) -> (inout PilotManager.Settings) -> Void {
        { settings in
            settings.jobTable = dir.file("pilot-jobs.json")
            settings.serviceFile = dir.file("service-address")
            settings.reconnectGraceSeconds = 60
            settings.keepPilotsOnStop = true
        }
    }

    @Test func aRestartAdoptsRunningJobsAndCancelsPendingOnesAndThoseOfRemovedPools() async throws {
        let slurm = FakeSlurm()
        var pool = PoolConfiguration(name: "warm")
        pool.minPilots = 2
        pool.maxPilots = 2
        var gone = PoolConfiguration(name: "gone")
        gone.minPilots = 1
        let dir = try TemporaryDirectory("dlhub-restart-table")
        // The first run: two pilot jobs of pool warm, one of pool gone (configured then).
        let (first, _, _) = try helper.makeManager(slurm, pool: pool, directory: dir) {
            keeping(dir)(&$0)
            $0.pools = [pool, gone]
        }
        await first.setServiceAddress("127.0.0.1:9999")
        await first.tick()
        #expect(slurm.submissionCount == 3)
        let table = dir.file("pilot-jobs.json")
        var st = stat()
        #expect(stat(table, &st) == 0 && st.st_mode & 0o777 == 0o600, "the table holds secrets: private")
        #expect(try String(contentsOfFile: dir.file("service-address"), encoding: .utf8) == "127.0.0.1:9999\n")
        let ids = slurm.submittedIDs
        let (running, pending, ofGonePool) = (ids[0], ids[1], ids[2])
        let warmIDs = slurm.submitted.enumerated().filter { $0.element.name == "dlhub-pilot-warm" }.map { ids[$0.offset] }
        #expect(Set(warmIDs) == [running, pending])
        let end = Int64(Date().timeIntervalSince1970) + 3600
        slurm.set(running, state: .running, endTime: end)
        slurm.set(ofGonePool, state: .running, endTime: end)
        await first.tick()
        let secret = try #require(await first.listenerJob(running)?.secret)
        // A crash: nothing more from the first run. The second knows only pool warm.
        let (second, _, _) = try helper.makeManager(slurm, pool: pool, directory: dir, configure: keeping(dir))
        #expect(await second.listenerJob(running)?.secret == secret, "a reconnecting pilot is admitted before Slurm is asked")
        await second.setServiceAddress("127.0.0.1:9998")
        await second.tick()
        #expect(await second.listenerJob(running)?.secret == secret, "the running job is adopted")
        #expect(slurm.cancelled.contains(pending), "the pending job is cancelled")
        #expect(slurm.cancelled.contains(ofGonePool), "a job of a pool no longer configured is cancelled")
        #expect(!slurm.cancelled.contains(running))
        #expect(await second.listenerJob(pending) == nil)
        #expect(try String(contentsOfFile: dir.file("service-address"), encoding: .utf8) == "127.0.0.1:9998\n")
        let pilots = try #require(await second.report()["pools"]?.arrayValue?.first?["pilots"]?.arrayValue)
        let adopted = try #require(pilots.first { $0["job_id"]?.intValue == Int64(running) })
        #expect(adopted["why"]?.stringValue?.hasPrefix("adopted after a service restart") == true, "\(adopted)")
        // The pending job is replaced (min 2), the adopted one counts toward the minimum.
        #expect(slurm.submissionCount == 4)
        let recorded = try JSONValue.parse(Array(try Data(contentsOf: URL(fileURLWithPath: table))))["jobs"]?.arrayValue ?? []
        let recordedIDs = Set(recorded.compactMap { $0["job_id"]?.intValue.map(UInt32.init) })
        #expect(recordedIDs.contains(running) && !recordedIDs.contains(pending) && !recordedIDs.contains(ofGonePool), "\(recordedIDs)")
    }

    @Test func aStopKeepsRunningPilotsWhenConfiguredAndCancelsPendingOnes() async throws {
        let slurm = FakeSlurm()
        var pool = PoolConfiguration(name: "warm")
        pool.minPilots = 2
        pool.maxPilots = 2
        let dir = try TemporaryDirectory("dlhub-restart-stop")
        let (manager, _, _) = try helper.makeManager(slurm, pool: pool, directory: dir, configure: keeping(dir))
        await manager.setServiceAddress("127.0.0.1:9999")
        await manager.tick()
        let (running, pending) = (slurm.submittedIDs[0], slurm.submittedIDs[1])
        slurm.set(running, state: .running, endTime: Int64(Date().timeIntervalSince1970) + 3600)
        await manager.tick()
        await manager.shutdown(within: 5)
        #expect(slurm.cancelled == [pending], "pending cancelled, running kept")
        // With cancel (the other setting), every job goes.
        let other = FakeSlurm()
        let (cancelling, _, _) = try helper.makeManager(other, pool: pool) { $0.keepPilotsOnStop = false }
        await cancelling.setServiceAddress("127.0.0.1:9999")
        await cancelling.tick()
        other.set(other.submittedIDs[0], state: .running, endTime: Int64(Date().timeIntervalSince1970) + 3600)
        await cancelling.tick()
        await cancelling.shutdown(within: 5)
        #expect(Set(other.cancelled) == Set(other.submittedIDs))
    }

    @Test func anAdoptedJobWhosePilotNeverReconnectsIsCancelledAfterTheGracePeriod() async throws {
        let slurm = FakeSlurm()
        var pool = PoolConfiguration(name: "warm")
        pool.minPilots = 1
        pool.maxPilots = 1
        let dir = try TemporaryDirectory("dlhub-restart-grace")
        let (first, _, _) = try helper.makeManager(slurm, pool: pool, directory: dir, configure: keeping(dir))
        await first.setServiceAddress("127.0.0.1:9999")
        await first.tick()
        let id = try #require(slurm.submittedIDs.first)
        slurm.set(id, state: .running, endTime: Int64(Date().timeIntervalSince1970) + 3600)
        let (second, _, _) = try helper.makeManager(slurm, pool: pool, directory: dir, configure: keeping(dir))
        await second.setServiceAddress("127.0.0.1:9999")
        let now = Date()
        await second.tick(now: now)
        #expect(!slurm.cancelled.contains(id), "within its grace period")
        await second.tick(now: now.addingTimeInterval(30))
        #expect(!slurm.cancelled.contains(id))
        await second.tick(now: now.addingTimeInterval(91))
        #expect(slurm.cancelled.contains(id), "60 s grace + 30 s margin passed without its pilot")
    }

    @Test func pilotJobsOfThisServiceItDoesNotTrackAreCancelledAtStartOthersAreLeftAlone() async throws {
        let slurm = FakeSlurm()
        var lost = JobSubmission(name: "dlhub-pilot-warm", script: "", workDir: "/tmp")
        lost.comment = "dlhubd:this-service"
        let untracked = try await slurm.submit(lost)
        var foreign = JobSubmission(name: "dlhub-pilot-warm", script: "", workDir: "/tmp")
        foreign.comment = "dlhubd:another-service"
        let other = try await slurm.submit(foreign)
        let users = try await slurm.submit(JobSubmission(name: "my-simulation", script: "", workDir: "/tmp"))
        let dir = try TemporaryDirectory("dlhub-restart-sweep")
        var pool = PoolConfiguration(name: "warm")
        pool.minPilots = 1
        let (manager, _, _) = try helper.makeManager(slurm, pool: pool, directory: dir) {
            keeping(dir)(&$0)
            $0.instance = "this-service"
        }
        await manager.setServiceAddress("127.0.0.1:9999")
        await manager.tick()
        #expect(slurm.cancelled == [untracked], "only this service's own untracked pilot job")
        let submitted = try #require(slurm.submitted.last)
        #expect(submitted.comment == "dlhubd:this-service", "its new pilot jobs carry the mark")
        await manager.tick()
        #expect(slurm.cancelled == [untracked], "once, at start: its own new job is tracked")
        _ = (other, users)
    }

    @Test func aJobTableOthersCouldReadIsSetAsideNotTrusted() async throws {
        let dir = try TemporaryDirectory("dlhub-restart-untrusted")
        let path = dir.file("pilot-jobs.json")
        let secret = PilotProof.random()
        try #"{"jobs":[{"job_id":42,"pool":"warm","secret":"\#(secret)","submitted":1,"why":"x"}]}"#.write(
            toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o644)
        let slurm = FakeSlurm()
        let (manager, _, _) = try helper.makeManager(slurm, pool: PoolConfiguration(name: "warm"), directory: dir, configure: keeping(dir))
        #expect(await manager.listenerJob(42) == nil, "a job from a table others could read (or write) is not adopted")
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).contains { $0.hasPrefix("pilot-jobs.json.untrusted-") })
        // The same table, private: adopted.
        let table = dir.file("pilot-jobs.json")
        try
            #"{"jobs":[{"job_id":42,"pool":"warm","secret":"\#(secret)","submitted":1,"why":"x"},{"job_id":43,"pool":"warm","secret":"short"}]}"#
            .write(toFile: table, atomically: true, encoding: .utf8)
        chmod(table, 0o600)
        let (trusting, _, _) = try helper.makeManager(slurm, pool: PoolConfiguration(name: "warm"), directory: dir, configure: keeping(dir))
        #expect(await trusting.listenerJob(42)?.secret == secret)
        #expect(await trusting.listenerJob(43) == nil, "an entry with a malformed secret is skipped")
    }
}

@Suite struct PilotHelloResidentTests {
    func hello(resident: [String]) -> PilotHello {
        PilotHello(
            credential: "MUNGE:x", jobID: 7, node: "node1", cores: 2, memoryMB: 1000, gpus: 0, walltimeEnd: 0, pool: "cpu", slots: 2,
            nonce: PilotProof.random(), isolation: "bubblewrap", resident: resident)
    }

    @Test func residentKeysTravelInTheHelloAndAreBounded() throws {
        let key = "sha256:" + String(repeating: "ab", count: 32)
        let h = hello(resident: [key, key + "+0123456789ab"])
        let bytes = PilotFrame.hello(h).encoded()
        guard case .hello(let back) = try PilotFrame.decode(type: bytes[4], body: bytes[5...]) else {
            Issue.record("not a hello")
            return
        }
        #expect(back.resident == h.resident)
        #expect(back.problem(now: 0) == nil)
        #expect(hello(resident: Array(repeating: key, count: PilotHello.maxResident + 1)).problem(now: 0)?.contains("resident") == true)
        #expect(hello(resident: ["../etc/passwd"]).problem(now: 0)?.contains("resident servable key") == true)
        #expect(hello(resident: [String(repeating: "a", count: 201)]).problem(now: 0) != nil)
    }
}
