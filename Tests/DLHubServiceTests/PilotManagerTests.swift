import DLHubCore
import DLHubService
import DLHubTesting
import Foundation
import Logging
import Testing

/// The pilot manager's handling of Slurm, through the `SlurmScheduler` seam (FakeSlurm): back-off,
/// pausing, vanished jobs. The real libslurm path is exercised by the end-to-end serving tests.
@Suite struct PilotManagerTests {
    func makeManager(
        _ slurm: FakeSlurm, pool: PoolConfiguration, directory: TemporaryDirectory? = nil,
        configure: (inout PilotManager.Settings) -> Void = { _ in }
    ) throws -> (PilotManager, Dispatcher, TemporaryDirectory) {
        let dir = try directory ?? TemporaryDirectory("dlhub-manager")
        let store = try TaskStore(path: dir.file("tasks.sqlite"))
        let dispatcher = Dispatcher(store: store, waiters: TaskWaiters(), logger: Logger(label: "test"))
        let template = dir.file("pilot.sbatch.template")
        try "#!/bin/sh\nsrun {{pilot}} --service {{service}} --pool {{pool}}\n".write(toFile: template, atomically: true, encoding: .utf8)
        var settings = PilotManager.Settings(
            pools: [pool], script: try PilotScript(templatePath: template), pilotExecutable: "/bin/true", workerScript: "/dev/null",
            python: "python3", logDirectory: dir.path, environment: ["PATH=/bin"])
        configure(&settings)
        let manager = PilotManager(settings: settings, slurm: slurm, dispatcher: dispatcher, logger: Logger(label: "test"))
        return (manager, dispatcher, dir)
    }

    @Test func aStopCancelsEveryPilotJobButNeverWaitsLongerThanItsBound() async throws {
        var pool = PoolConfiguration(name: "warm")
        pool.minPilots = 3
        pool.maxPilots = 3
        let quick = FakeSlurm()
        let (manager, _, _) = try makeManager(quick, pool: pool)
        await manager.setServiceAddress("127.0.0.1:9999")
        await manager.tick()
        #expect(quick.submissionCount == 3)
        await manager.shutdown(within: 5)
        #expect(Set(quick.cancelled) == Set(quick.submittedIDs), "all cancelled")

        // A controller that does not answer: each cancel would take a minute.
        let stuck = FakeSlurm()
        stuck.cancelDelaySeconds = 60
        let (slow, _, _) = try makeManager(stuck, pool: pool)
        await slow.setServiceAddress("127.0.0.1:9999")
        await slow.tick()
        let started = Date()
        await slow.shutdown(within: 1)
        #expect(Date().timeIntervalSince(started) < 10, "the stop is bounded, not 3 x 60 s")
    }

    @Test func theQueueWaitIsLearnedFromSlurmsSubmitAndStartTimes() async throws {
        let slurm = FakeSlurm()
        var pool = PoolConfiguration(name: "busy")
        pool.minPilots = 1
        let (manager, _, _) = try makeManager(slurm, pool: pool)
        await manager.setServiceAddress("127.0.0.1:9999")
        await manager.tick()
        let id = try #require(slurm.submittedIDs.first)
        slurm.set(id, state: .running, endTime: Int64(Date().timeIntervalSince1970) + 3600)
        slurm.jobs[id]?.submitTime = 1_000
        slurm.jobs[id]?.startTime = 1_120
        await manager.tick()
        let report = await manager.report()
        #expect(report["pools"]?.arrayValue?.first?["queue_wait_s"] == 120)
    }

    @Test func keepsMinimumAndRendersTheTemplate() async throws {
        let slurm = FakeSlurm()
        var pool = PoolConfiguration(name: "warm")
        pool.minPilots = 1
        pool.partition = "cpu"
        pool.walltimeMinutes = 10
        let (manager, _, _) = try makeManager(slurm, pool: pool)
        await manager.setServiceAddress("127.0.0.1:9999")
        await manager.tick()
        await manager.tick()
        #expect(slurm.submissionCount == 1, "a pending pilot is not submitted twice")
        let job = try #require(slurm.submitted.first)
        #expect(job.script.contains("--service 127.0.0.1:9999 --pool warm"))
        #expect(job.partition == "cpu")
        #expect(job.timeLimitMinutes == 10)
        #expect(job.requeue == false)
        #expect(job.warningSignal?.signal == SIGUSR1)
    }

    @Test func failingSubmissionsBackOffThenPauseThePoolVisibly() async throws {
        let slurm = FakeSlurm()
        slurm.failSubmissions = DLHubError(.slurm, "submitting job 'dlhub-pilot-warm': partition 'nope' does not exist")
        var pool = PoolConfiguration(name: "warm")
        pool.minPilots = 1
        let (manager, _, _) = try makeManager(slurm, pool: pool)
        await manager.setServiceAddress("127.0.0.1:9999")
        let start = Date()
        // Ticking every second for a minute: back-off means only a handful of attempts.
        var attempts = 0
        for second in 0..<60 {
            await manager.tick(now: start.addingTimeInterval(Double(second)))
            attempts = slurm.failedAttempts
        }
        #expect(attempts >= 4 && attempts <= 6, "attempts in 60 s: \(attempts)")
        let report = await manager.report()
        let paused = report["pools"]?.arrayValue?.first?["paused"]?.stringValue ?? ""
        #expect(paused.contains("partition 'nope' does not exist"), "\(report)")
        // Once Slurm accepts again, the pool resumes.
        slurm.failSubmissions = nil
        await manager.tick(now: start.addingTimeInterval(1000))
        #expect(slurm.submissionCount == 1)
        #expect(await manager.report()["pools"]?.arrayValue?.first?["paused"] == .null)
    }

    @Test func vanishedJobIsForgottenAndReplaced() async throws {
        let slurm = FakeSlurm()
        var pool = PoolConfiguration(name: "warm")
        pool.minPilots = 1
        let (manager, _, _) = try makeManager(slurm, pool: pool)
        await manager.setServiceAddress("127.0.0.1:9999")
        await manager.tick()
        let first = try #require(slurm.submittedIDs.first)
        slurm.forget(first)  // gone from the controller
        await manager.tick()
        await manager.tick()
        #expect(slurm.submissionCount == 2)
        #expect(await manager.isOurJob(first) == false)
    }
}
