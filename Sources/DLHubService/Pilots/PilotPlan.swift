import DLHubCore
import Foundation

/// What a tick of the pilot manager decides, as plain functions of what it observed: no Slurm,
/// no clock, no I/O. `PilotManager.tick` observes, asks, and carries out the answer (Slurm calls,
/// the dispatcher, logs, the job table); unit tests ask directly.
///
/// Two rounds, because the second must see what the first changed: `jobs` settles every tracked
/// job against Slurm's answer (adopted, cancelled, ended, forgotten); then, once the dispatcher
/// has re-queued the ended jobs' work, `pool` decides for each pool, through `PoolPolicy`, what
/// to submit and what to drain.
enum PilotPlan {
    typealias Job = PilotManager.TrackedJob

    /// How long an ended job stays in the table (and in the report) before it is forgotten.
    static let forgetAfterSeconds = 120.0
    /// Margin on top of the reconnect grace before an adopted job without its pilot is given up.
    static let reconnectMarginSeconds = 30.0

    // MARK: Jobs

    /// What the job round sees.
    struct Observation: Sendable {
        var now: Date
        /// Slurm's state of the tracked jobs it still knows; nil when it could not be read (no
        /// job is concluded ended from silence then).
        var slurm: [UInt32: JobInfo]?
        /// Jobs with a pilot connected to the dispatcher.
        var connected: Set<UInt32>
        /// The pools configured now: a job of the previous run in any other pool is not adopted.
        var pools: Set<String>
        var reconnectGraceSeconds: Int
    }

    /// What the job round leaves to be done, in order, after its table is recorded.
    enum JobStep: Sendable, Hashable {
        /// A running job of the previous run is kept: its pilot reconnects.
        case adopt(UInt32, pool: String)
        /// A job of the previous run that must not live on (pending, or its pool is gone); `why` is its reason now.
        case cancelPrevious(UInt32, why: String)
        /// An adopted job whose pilot did not come back within the grace period holds a node for nothing.
        case abandon(UInt32)
        /// Put back in the queue by Slurm after it ran (a site default): its pilot is gone, so it is
        /// cancelled and replaced rather than waited for.
        case requeued(UInt32)
        case finished(UInt32, JobInfo)
        case vanished(UInt32)
    }

    struct JobRound: Sendable {
        /// The table from now on.
        var jobs: [UInt32: Job]
        var steps: [JobStep]
        /// Queue waits seen this round (start minus submit), in order, for each pool's estimate.
        var queueWaits: [(pool: String, seconds: Double)]
        /// Whether a job ended: the job table on disk must say so.
        var ended: Bool
    }

    /// Settles every tracked job against what Slurm and the dispatcher say of it.
    static func jobs(_ table: [UInt32: Job], seen: Observation) -> JobRound {
        var round = JobRound(jobs: table, steps: [], queueWaits: [], ended: false)
        let now = seen.now
        func end(_ id: UInt32, reason: String? = nil) {
            if round.jobs[id]?.endedAt == nil { round.ended = true }
            round.jobs[id]?.endedAt = now
            if let reason { round.jobs[id]?.reason = reason }
        }
        // Jobs of the previous run, once Slurm says what became of them: a running one is adopted,
        // a pending one cancelled (it would start and find nobody), one of a pool gone cancelled too.
        if let slurm = seen.slurm {
            for (id, job) in round.jobs where job.fromPreviousRun {
                round.jobs[id]?.fromPreviousRun = false
                round.jobs[id]?.waitLearned = true
                guard let info = slurm[id], !info.state.isFinished else {
                    end(id)
                    continue
                }
                let configured = seen.pools.contains(job.pool)
                if info.state == .running, configured {
                    round.jobs[id]?.adoptedAt = now
                    // Said once, however many restarts it lives through (the table keeps the reason).
                    let adopted = "adopted after a service restart"
                    round.jobs[id]?.reason = job.reason.hasPrefix(adopted) ? job.reason : "\(adopted) (submitted: \(job.reason))"
                    round.steps.append(.adopt(id, pool: job.pool))
                    continue
                }
                let why =
                    configured
                    ? "pending when the service restarted: cancelled (it would have started and found nobody)"
                    : "its pool \(job.pool) is no longer configured: cancelled"
                end(id, reason: why)
                round.steps.append(.cancelPrevious(id, why: why))
            }
        }
        // Adopted jobs whose pilot missed its grace period; checked even when Slurm is not answering.
        let graceEnd = Double(seen.reconnectGraceSeconds) + reconnectMarginSeconds
        for (id, job) in round.jobs where job.endedAt == nil && !seen.connected.contains(id) {
            guard let adopted = job.adoptedAt, now.timeIntervalSince(adopted) > graceEnd else { continue }
            round.jobs[id]?.adoptedAt = nil
            round.jobs[id]?.drainRequested = true
            round.jobs[id]?.reason = "adopted after a restart, but its pilot did not reconnect: cancelled"
            round.steps.append(.abandon(id))
        }
        if let slurm = seen.slurm {
            for (id, job) in round.jobs where job.endedAt == nil && !job.fromPreviousRun {
                if seen.connected.contains(id) { round.jobs[id]?.adoptedAt = nil }
                guard let info = slurm[id] else {
                    end(id, reason: "vanished from the controller")
                    round.steps.append(.vanished(id))
                    continue
                }
                let wasRunning = job.info?.state == .running
                round.jobs[id]?.info = info
                if !job.waitLearned, info.startTime > 0, info.submitTime > 0, info.state == .running || info.state.isFinished {
                    round.jobs[id]?.waitLearned = true
                    round.queueWaits.append((job.pool, Double(max(0, info.startTime - info.submitTime))))
                }
                if wasRunning, info.state == .pending {
                    end(id, reason: "requeued by Slurm (\(info.reason)); cancelled and replaced")
                    round.steps.append(.requeued(id))
                } else if info.state.isFinished {
                    end(id)
                    round.steps.append(.finished(id, info))
                }
            }
        }
        round.jobs = round.jobs.filter { !isForgotten($0.value, now: now) }
        return round
    }

    /// Whether an ended job has been shown long enough.
    static func isForgotten(_ job: Job, now: Date) -> Bool {
        job.endedAt.map { now.timeIntervalSince($0) >= forgetAfterSeconds } ?? false
    }

    // MARK: Pools

    /// A pilot connected to the dispatcher, as the pool round needs it.
    struct Session: Sendable, Equatable {
        var jobID: UInt32
        /// Slots taken (batches and loads).
        var busy: Int
        var slots: Int
        var draining: Bool
        var idleSince: Date
    }

    /// What the pool round sees of one pool.
    struct PoolObservation: Sendable {
        var now: Date
        /// The pool's jobs that have not ended, in table order.
        var jobs: [Job]
        /// The pool's connected pilots, by job.
        var sessions: [UInt32: [Session]]
        var queuedItems: Int
        /// When a submission may be tried again after failures (the back-off).
        var retryAt: Date
        /// The pool's learned queue wait (seconds), nil until one of its jobs has started.
        var learnedQueueWait: Double?
    }

    enum PoolStep: Sendable, Hashable {
        case submit(reason: String)
        /// A successor for a job whose walltime is ending (marked replaced once submitted).
        case replace(UInt32, reason: String)
        /// `cancel` when no pilot of the job is connected (still pending, or never came up):
        /// there is nothing to drain then.
        case drain(UInt32, reason: String, cancel: Bool)
    }

    /// What to submit and drain in one pool: `PoolPolicy`'s decisions on the observed pool.
    static func pool(_ pool: PoolConfiguration, seen: PoolObservation) -> [PoolStep] {
        PoolPolicy.actions(pool: pool, snapshot: snapshot(seen)).map { action in
            switch action {
            case .submit(let reason): .submit(reason: reason)
            case .submitReplacement(let old): .replace(old, reason: "replacing job \(old) before its walltime ends")
            case .drain(let id, let reason): .drain(id, reason: reason, cancel: seen.sessions[id]?.isEmpty ?? true)
            }
        }
    }

    /// The pool as `PoolPolicy` sees it: one pilot per live job, with its connected sessions summed.
    static func snapshot(_ seen: PoolObservation) -> PoolPolicy.Snapshot {
        let pilots = seen.jobs.map { job in
            let sessions = seen.sessions[job.id] ?? []
            let idleSince = sessions.map(\.idleSince).max() ?? job.submittedAt
            return PoolPolicy.Pilot(
                jobID: job.id, state: job.info?.state ?? .pending, endTime: job.info?.state == .running ? job.info?.endTime ?? 0 : 0,
                connected: !sessions.isEmpty, draining: job.drainRequested || sessions.contains { $0.draining },
                busy: sessions.reduce(0) { $0 + $1.busy }, slots: max(1, sessions.reduce(0) { $0 + $1.slots }),
                idleSince: Int64(idleSince.timeIntervalSince1970), replaced: job.replaced)
        }
        return PoolPolicy.Snapshot(
            now: Int64(seen.now.timeIntervalSince1970), pilots: pilots, queuedItems: seen.queuedItems, paused: seen.retryAt > seen.now,
            queueWait: queueWait(learned: seen.learnedQueueWait, jobs: seen.jobs, now: seen.now))
    }

    /// The queue wait a pool plans with: the learned one, or longer while one of its jobs has
    /// already been pending longer than that (the cluster got busier).
    static func queueWait(learned: Double?, jobs: some Sequence<Job>, now: Date) -> Int64 {
        let pendingFor =
            jobs.filter { $0.endedAt == nil && ($0.info?.state ?? .pending) == .pending }.map { now.timeIntervalSince($0.submittedAt) }
            .max() ?? 0
        return Int64(max(learned ?? 0, pendingFor))
    }
}
