import DLHubCluster
import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// libslurm against the real local cluster (`slurm/dev-cluster up`).
@Suite(.serialized) struct LibSlurmClientTests {
    let slurm: LibSlurmClient
    let scratch: TemporaryDirectory

    init() throws {
        try DevCluster.require()
        slurm = LibSlurmClient()
        scratch = try TemporaryDirectory("dlhub-slurm")
    }

    func waitFor(_ id: UInt32, timeout: Double = 60, until done: (JobInfo) -> Bool) async throws -> JobInfo {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let info = try await slurm.job(id), done(info) { return info }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestSetupError("job \(id) did not reach the expected state within \(timeout)s")
    }

    func job(_ name: String, _ script: String) -> JobSubmission {
        var job = JobSubmission(name: name, script: script, workDir: scratch.path)
        job.outputPath = scratch.file("\(name)-%j.out")
        job.environment = ["PATH=/usr/bin:/bin", "DLHUB_TEST=1"]
        job.timeLimitMinutes = 5
        return job
    }

    @Test func submittedJobRunsToCompletion() async throws {
        let marker = scratch.file("ran")
        let id = try await slurm.submit(job("dlhub-test-ok", "#!/bin/sh\necho \"$DLHUB_TEST $SLURM_JOB_ID\" > \(marker)\n"))
        let info = try await waitFor(id) { $0.state.isFinished }
        #expect(info.state == .completed)
        #expect(info.name == "dlhub-test-ok")
        #expect(info.partition == "cpu")
        #expect(try String(contentsOfFile: marker, encoding: .utf8) == "1 \(id)\n")
    }

    @Test func jobWithFutureBeginTimeIsPendingThenCancelled() async throws {
        var j = job("dlhub-test-held", "#!/bin/sh\nsleep 1\n")
        j.beginTime = Int64(Date().timeIntervalSince1970) + 3600
        let id = try await slurm.submit(j)
        let pending = try await waitFor(id) { _ in true }
        #expect(pending.state == .pending)
        #expect(pending.reason.contains("BeginTime"))
        try await slurm.cancel(id)
        let cancelled = try await waitFor(id) { $0.state.isFinished }
        #expect(cancelled.state == .cancelled)
        // squeue, read independently, agrees.
        let squeue = try DevCluster.command("squeue", ["-h", "-j", "\(id)", "-o", "%T", "--states=all"])
        #expect(squeue.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "CANCELLED")
    }

    @Test func theStatesOfSeveralJobsComeInOneCall() async throws {
        var held = job("dlhub-test-many-a", "#!/bin/sh\nsleep 1\n")
        held.beginTime = Int64(Date().timeIntervalSince1970) + 3600
        held.comment = "dlhubd:test-\(getpid())"
        let a = try await slurm.submit(held)
        let b = try await slurm.submit(job("dlhub-test-many-b", "#!/bin/sh\nexit 0\n"))
        _ = try await waitFor(b) { $0.state.isFinished }
        let infos = try await slurm.jobs([a, b, 999_999_999])
        #expect(infos[a]?.state == .pending && infos[a]?.reason.contains("BeginTime") == true)
        #expect(infos[b]?.state == .completed)
        #expect(infos[999_999_999] == nil, "a job the controller does not know is absent")
        #expect(infos[a] == (try await slurm.job(a)), "the same as asking for one")
        #expect(infos[a]?.comment == "dlhubd:test-\(getpid())", "the comment marks a service's pilot jobs")
        let all = try await slurm.jobsOfThisUser()
        #expect(all.contains { $0.id == a } && all.contains { $0.id == b }, "every job of this user")
        try await slurm.cancel(a)
    }

    @Test func submitToUnknownPartitionNamesThePartition() async throws {
        var j = job("dlhub-test-badpart", "#!/bin/sh\ntrue\n")
        j.partition = "no-such-partition"
        await #expect {
            _ = try await slurm.submit(j)
        } throws: { error in
            let e = error as? DLHubError
            return e?.code == .slurm && e?.message.contains("no-such-partition") == true
        }
    }

    @Test func jobOnBigmemPartitionRunsOnTheBigmemNode() async throws {
        var j = job("dlhub-test-bigmem", "#!/bin/sh\ntrue\n")
        j.partition = "bigmem"
        let id = try await slurm.submit(j)
        let info = try await waitFor(id) { $0.state.isFinished }
        #expect(info.nodes == "node4")
    }

    @Test func signalReachesTheRunningJob() async throws {
        let marker = scratch.file("signalled")
        // The signal goes to the job's steps, as the pilot's srun step receives Slurm's warnings.
        let step = scratch.file("step.sh")
        try "#!/bin/bash\ntrap 'echo got USR1 > \(marker); exit 0' USR1\nfor i in $(seq 600); do sleep 0.1; done\n"
            .write(toFile: step, atomically: true, encoding: .utf8)
        chmod(step, 0o755)
        let id = try await slurm.submit(job("dlhub-test-signal", "#!/bin/bash\nsrun \(step)\n"))
        _ = try await waitFor(id) { $0.state == .running }
        try await Task.sleep(for: .milliseconds(500))  // let the script install its trap
        try await slurm.signal(id, signal: SIGUSR1)
        let info = try await waitFor(id, timeout: 30) { $0.state.isFinished }
        #expect(info.state == .completed)
        #expect(try String(contentsOfFile: marker, encoding: .utf8) == "got USR1\n")
    }

    @Test func unknownJobIsNil() async throws {
        #expect(try await slurm.job(4_000_000_000) == nil)
    }
}
