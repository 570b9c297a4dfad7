import DLHubCore
import Foundation
import Logging
import Metrics
import ServiceLifecycle

/// Submits, watches and releases pilot jobs through libslurm, pool by pool.
///
/// Each tick it reads the state of every pilot job it submitted (never by parsing `squeue`),
/// hands lost ones to the dispatcher for re-queueing, and carries out what `PilotPlan` decides.
/// Submission failures back off; a pool that keeps failing is paused with a visible reason.
public actor PilotManager {
    struct TrackedJob {
        var id: UInt32
        var pool: String
        var submittedAt: Date
        var reason: String
        var info: JobInfo?
        var replaced = false
        var drainRequested = false
        /// Whether its queue wait went into the pool's estimate.
        var waitLearned = false
        var endedAt: Date?
        /// The secret the job's pilots prove themselves with (`PilotProof`).
        var secret: String
        /// Submitted by a previous run of the service (from the job table): looked at once Slurm
        /// answers, then adopted if running, cancelled if pending.
        var fromPreviousRun = false
        /// When a running job of a previous run was adopted (its pilot has a grace period to reconnect).
        var adoptedAt: Date?
    }

    struct PoolState {
        var failures = 0
        var nextAttempt = Date.distantPast
        var paused: String?
        var lastError: String?
        var submitted = 0
        /// How long this pool's pilot jobs wait in Slurm's queue (seconds; a moving average of
        /// their start minus submit times), nil until one has started.
        var queueWait: Double?
    }

    public struct Settings: Sendable {
        public var pools: [PoolConfiguration]
        public var script: PilotScript
        public var pilotExecutable: String
        public var workerScript: String
        public var python: String
        public var logDirectory: String
        public var environment: [String]
        public var sandbox: SandboxSettings
        /// Where the jobs this service submitted are recorded for the next start (nil: nowhere,
        /// and a restart cannot adopt them).
        public var jobTable: String?
        /// Where the pilot listener's address is written for pilots reconnecting after a restart.
        public var serviceFile: String?
        /// How long a pilot that lost the service keeps its workers and tries to reconnect (0: it ends at once).
        public var reconnectGraceSeconds = 0
        /// Whether a graceful stop leaves running pilot jobs for the next start (pending ones are cancelled).
        public var keepPilotsOnStop = false
        /// This service's id: its pilot jobs carry `dlhubd:<id>` as their Slurm comment, so a
        /// restarted service finds those it no longer tracks (nil: not marked, not swept).
        public var instance: String?

        /// The Slurm comment of this service's pilot jobs.
        public var jobComment: String? { instance.map { "dlhubd:" + $0 } }

        public init(
            pools: [PoolConfiguration], script: PilotScript, pilotExecutable: String, workerScript: String, python: String,
            logDirectory: String, environment: [String], sandbox: SandboxSettings = SandboxSettings()
        ) {
            self.pools = pools
            self.script = script
            self.pilotExecutable = pilotExecutable
            self.workerScript = workerScript
            self.python = python
            self.logDirectory = logDirectory
            self.environment = environment
            self.sandbox = sandbox
        }
    }

    let settings: Settings
    let slurm: any SlurmScheduler
    let dispatcher: Dispatcher
    let logger: Logger
    var serviceAddress: String = ""
    /// The service is stopping: no pilot job is submitted any more (see `shutdown`).
    var stopping = false
    var jobs: [UInt32: TrackedJob] = [:]
    var poolStates: [String: PoolState] = [:]
    /// Whether the first look through this user's jobs for untracked pilot jobs is done.
    var swept = false
    let submissions = Counter(label: "dlhub_pilot_submissions_total")
    let submissionFailures = Counter(label: "dlhub_pilot_submission_failures_total")

    /// Consecutive submission failures after which a pool is paused.
    static let pauseAfter = 5

    public init(settings: Settings, slurm: any SlurmScheduler, dispatcher: Dispatcher, logger: Logger) {
        self.settings = settings
        self.slurm = slurm
        self.dispatcher = dispatcher
        self.logger = logger
        guard let path = settings.jobTable else { return }
        do throws(DLHubError) {
            for entry in try PilotJobTable(path: path).load() {
                jobs[entry.id] = TrackedJob(
                    id: entry.id, pool: entry.pool, submittedAt: entry.submittedAt, reason: entry.reason, secret: entry.secret,
                    fromPreviousRun: true)
            }
            let found = jobs.keys.sorted().map(String.init).joined(separator: ",")
            if !found.isEmpty {
                logger.info(
                    "pilot jobs of the previous run found; adopting the running ones, cancelling the pending ones",
                    metadata: ["slurm.jobs": "\(found)"])
            }
        } catch {
            logger.error("cannot read the pilot job table", metadata: ["error": "\(error.message)"])
        }
    }

    /// Records the jobs alive now in the job table (each submission, and each end, is written
    /// before anything depends on it).
    func saveTable() {
        guard let path = settings.jobTable else { return }
        let entries = jobs.values.filter { $0.endedAt == nil }.map {
            PilotJobTable.Entry(id: $0.id, pool: $0.pool, secret: $0.secret, submittedAt: $0.submittedAt, reason: $0.reason)
        }
        do throws(DLHubError) { try PilotJobTable(path: path).save(entries) } catch {
            logger.error("cannot record the pilot jobs: a restart will not adopt them", metadata: ["error": "\(error.message)"])
        }
    }

    /// Once, at start: pilot jobs marked as this service's that it does not track (submitted
    /// just before a crash, before the job table was written; or a table that was lost) are
    /// cancelled: their pilots could not prove themselves, and pending ones would start for nobody.
    func sweepUntracked() async {
        guard let comment = settings.jobComment else {
            swept = true
            return
        }
        let mine: [JobInfo]
        do throws(DLHubError) { mine = try await slurm.jobsOfThisUser() } catch {
            logger.warning("cannot list this account's jobs to find untracked pilot jobs", metadata: ["error": "\(error.message)"])
            return
        }
        swept = true
        for info in mine where info.comment == comment && !info.state.isFinished && jobs[info.id] == nil {
            logger.warning(
                "a pilot job of this service that it does not track: cancelled",
                metadata: ["slurm.job_id": "\(info.id)", "slurm.state": "\(info.state.rawValue)"])
            try? await slurm.cancel(info.id)
        }
    }

    public func setServiceAddress(_ address: String) {
        serviceAddress = address
        writeServiceFile()
    }

    public func isOurJob(_ id: UInt32) -> Bool { jobs[id].map { $0.endedAt == nil } ?? false }

    /// What the pilot listener needs to admit a pilot of job `id`: nil unless the job is ours and alive.
    public func listenerJob(_ id: UInt32) -> PilotListener.Job? {
        guard let job = jobs[id], job.endedAt == nil else { return nil }
        return PilotListener.Job(secret: job.secret, pool: job.pool)
    }

    /// One round: every tracked job first, against what Slurm says of it; then every pool, seeing
    /// what that changed (the ended jobs' work re-queued, silent pilots reaped).
    public func tick(now: Date = Date()) async {
        let seen = await observeJobs(now: now)
        let round = PilotPlan.jobs(jobs, seen: seen)
        record(round)
        await carryOut(round.steps)
        if round.ended { saveTable() }
        await dispatcher.reapSilentSessions(olderThan: 60)
        await dispatcher.reapOverdueBatches()
        for pool in settings.pools {
            let seen = await observe(pool, now: now)
            await carryOut(PilotPlan.pool(pool, seen: seen), for: pool, now: now)
        }
        updatePilotGauges()
    }

    /// What the job round needs: Slurm's state of every tracked job (one call for all, not one
    /// per job) and which jobs have a pilot connected. The first time Slurm answers, the pilot
    /// jobs of this service it does not track are swept first.
    func observeJobs(now: Date) async -> PilotPlan.Observation {
        let tracked = jobs.filter { $0.value.endedAt == nil }.map(\.key)
        var infos: [UInt32: JobInfo]?
        do { infos = try await slurm.jobs(tracked) } catch {
            logger.warning("cannot read pilot job states", metadata: ["error": "\(error)"])
        }
        if !swept, infos != nil { await sweepUntracked() }
        let connected = Set(await dispatcher.allSessions().map(\.hello.jobID))
        return PilotPlan.Observation(
            now: now, slurm: infos, connected: connected, pools: Set(settings.pools.map(\.name)),
            reconnectGraceSeconds: settings.reconnectGraceSeconds)
    }

    /// Takes the job round's table and queue waits, before any of its steps can suspend the actor.
    func record(_ round: PilotPlan.JobRound) {
        jobs = round.jobs
        for (pool, seconds) in round.queueWaits { learnQueueWait(pool: pool, seconds: seconds) }
    }

    /// The job round's Slurm calls, dispatcher calls and logs.
    func carryOut(_ steps: [PilotPlan.JobStep]) async {
        for step in steps {
            switch step {
            case .adopt(let id, let pool):
                logger.info("pilot job of the previous run adopted", metadata: ["slurm.job_id": "\(id)", "pilot.pool": "\(pool)"])
            case .cancelPrevious(let id, let why):
                logger.info("pilot job of the previous run cancelled", metadata: ["slurm.job_id": "\(id)", "reason": "\(why)"])
                do throws(DLHubError) { try await slurm.cancel(id) } catch {
                    logger.warning(
                        "cannot cancel a pilot job of the previous run", metadata: ["slurm.job_id": "\(id)", "error": "\(error.message)"])
                }
            case .abandon(let id):
                logger.warning("adopted pilot job did not reconnect; cancelling it", metadata: ["slurm.job_id": "\(id)"])
                try? await slurm.cancel(id)
            case .requeued(let id):
                try? await slurm.cancel(id)
                await dispatcher.jobEnded(id, reason: "job requeued by Slurm")
            case .finished(let id, let info):
                await dispatcher.jobEnded(id, reason: "job \(info.state.rawValue)\(info.reason == "None" ? "" : " (\(info.reason))")")
                logger.info(
                    "pilot job ended",
                    metadata: ["slurm.job_id": "\(id)", "slurm.state": "\(info.state.rawValue)", "slurm.reason": "\(info.reason)"])
            case .vanished(let id):
                await dispatcher.jobEnded(id, reason: "job vanished from the controller")
                logger.warning("pilot job vanished from the controller", metadata: ["slurm.job_id": "\(id)"])
            }
        }
    }

    /// What the pool round needs of `pool`, read after the job round has been carried out.
    func observe(_ pool: PoolConfiguration, now: Date) async -> PilotPlan.PoolObservation {
        let load = await dispatcher.load(pool: pool.name)
        let sessions = load.sessions.map {
            PilotPlan.Session(jobID: $0.hello.jobID, busy: $0.busy, slots: $0.slots, draining: $0.draining, idleSince: $0.idleSince)
        }
        let state = poolStates[pool.name] ?? PoolState()
        return PilotPlan.PoolObservation(
            now: now, jobs: jobs.values.filter { $0.pool == pool.name && $0.endedAt == nil },
            sessions: Dictionary(grouping: sessions, by: \.jobID), queuedItems: load.queuedItems, retryAt: state.nextAttempt,
            learnedQueueWait: state.queueWait)
    }

    /// The pool round's submissions and drains; submission failures go into the pool's back-off.
    func carryOut(_ steps: [PilotPlan.PoolStep], for pool: PoolConfiguration, now: Date) async {
        var state = poolStates[pool.name] ?? PoolState()
        for step in steps {
            switch step {
            case .submit(let reason):
                await submit(pool, reason: reason, state: &state, now: now)
            case .replace(let old, let reason):
                if await submit(pool, reason: reason, state: &state, now: now) { jobs[old]?.replaced = true }
            case .drain(let id, let reason, let cancel):
                jobs[id]?.drainRequested = true
                await dispatcher.drain(jobID: id, reason: reason)
                if cancel { try? await slurm.cancel(id) }
            }
        }
        poolStates[pool.name] = state
    }

    @discardableResult
    func submit(_ pool: PoolConfiguration, reason: String, state: inout PoolState, now: Date) async -> Bool {
        guard !serviceAddress.isEmpty, !stopping else { return false }
        let secret = PilotProof.random()
        let job = settings.script.submission(for: pool, settings: settings, service: serviceAddress, secret: secret)
        do {
            let id = try await slurm.submit(job)
            // A submission stuck in libslurm (the controller down) can return after the stop has
            // cancelled the pilots: that job is cancelled at once, not left behind (found by the
            // soak: jobs submitted after the SIGTERM stayed on the cluster).
            if stopping {
                let slurm = self.slurm
                logger.warning("cancelling a pilot job whose submission returned after the stop began", metadata: ["slurm.job_id": "\(id)"])
                Task.detached { try? await slurm.cancel(id) }
                return false
            }
            jobs[id] = TrackedJob(id: id, pool: pool.name, submittedAt: now, reason: reason, secret: secret)
            saveTable()
            state.failures = 0
            state.paused = nil
            state.lastError = nil
            state.nextAttempt = .distantPast
            state.submitted += 1
            submissions.increment()
            logger.info("pilot job submitted", metadata: ["slurm.job_id": "\(id)", "pilot.pool": "\(pool.name)", "reason": "\(reason)"])
            return true
        } catch {
            submissionFailures.increment()
            state.failures += 1
            state.lastError = error.message
            let backoff = min(300, pow(2, Double(state.failures)))
            state.nextAttempt = now.addingTimeInterval(backoff)
            if state.failures >= Self.pauseAfter {
                state.paused =
                    "pilot submission failed \(state.failures) times in a row (\(error.message)); retrying every \(Int(backoff)) s. Check the pool's partition, account and qos."
            }
            logger.error(
                "pilot submission failed",
                metadata: ["pilot.pool": "\(pool.name)", "error": "\(error.message)", "retry_in_s": "\(Int(backoff))"])
            return false
        }
    }

    /// What `GET /v1/pilots` shows `caller`: a resident servable the caller may not see is "private".
    public func report(for caller: Caller? = nil, now: Date = Date()) async -> JSONValue {
        let sessions = await dispatcher.allSessions()
        var residentNames: [String: String] = [:]
        for key in Set(sessions.flatMap(\.loaded)) { residentNames[key] = await dispatcher.displayName(key, for: caller) }
        var pools: [JSONValue] = []
        for pool in settings.pools {
            let load = await dispatcher.load(pool: pool.name)
            let state = poolStates[pool.name] ?? PoolState()
            var pilots: [JSONValue] = []
            for job in jobs.values.filter({ $0.pool == pool.name }).sorted(by: { $0.id < $1.id }) {
                let s = sessions.filter { $0.hello.jobID == job.id }
                var entry: [String: JSONValue] = [
                    "job_id": .int(Int64(job.id)), "state": .string(job.info?.state.rawValue ?? "PENDING"),
                    "reason": .string(job.info?.reason ?? job.reason), "nodes": .string(job.info?.nodes ?? ""),
                    "connected": .bool(!s.isEmpty), "draining": .bool(job.drainRequested || s.contains { $0.draining }),
                    "resident": .array(
                        residentNames.filter { s.flatMap(\.loaded).contains($0.key) }.map(\.value).sorted().map { .string($0) }),
                    "running_batches": .int(Int64(s.reduce(0) { $0 + $1.runningBatches })),
                    "isolation": s.first.map { .string($0.hello.isolation) } ?? .null,
                    "submitted": .double(job.submittedAt.timeIntervalSince1970), "why": .string(job.reason),
                ]
                if let info = job.info, info.state == .running, info.endTime > 0 {
                    entry["walltime_left_s"] = .int(max(0, info.endTime - Int64(now.timeIntervalSince1970)))
                }
                pilots.append(.object(entry))
            }
            pools.append([
                "pool": .string(pool.name), "partition": .string(pool.partition ?? "(default)"),
                "min": .int(Int64(pool.minPilots)), "max": .int(Int64(pool.maxPilots)),
                "queued_items": .int(Int64(load.queuedItems)), "submitted_total": .int(Int64(state.submitted)),
                "queue_wait_s": .int(queueWait(pool: pool.name, now: now)), "max_queued_ahead": .int(Int64(pool.maxQueuedAhead)),
                "paused": state.paused.map { .string($0) } ?? .null, "last_error": state.lastError.map { .string($0) } ?? .null,
                "pilots": .array(pilots),
            ])
        }
        return ["pools": .array(pools)]
    }

    /// For a queued task: the pilot job it is waiting for, as `dlhub run` shows it.
    public func waiting(pool: String, now: Date = Date()) -> WaitingFor? {
        let candidates = jobs.values.filter { $0.pool == pool && $0.endedAt == nil }.sorted { $0.submittedAt < $1.submittedAt }
        if let paused = poolStates[pool]?.paused { return WaitingFor(pool: pool, paused: paused) }
        guard let job = candidates.first(where: { $0.info?.state != .running }) ?? candidates.first else {
            return WaitingFor(pool: pool, state: "SUBMITTING")
        }
        return WaitingFor(
            pool: pool, jobID: Int(job.id), state: job.info?.state.rawValue ?? "PENDING", reason: job.info?.reason ?? "submitted",
            waitedSeconds: now.timeIntervalSince(job.submittedAt))
    }
}

/// Runs the pilot manager's ticks until shutdown; on shutdown, drains and cancels its pilots.
public struct PilotManagerService: Service {
    let manager: PilotManager
    let interval: Duration
    /// Where pilots connect, known once the pilot listener has bound its port.
    let address: @Sendable () async -> String

    public init(manager: PilotManager, interval: Duration = .seconds(1), address: @escaping @Sendable () async -> String) {
        self.manager = manager
        self.interval = interval
        self.address = address
    }

    public func run() async throws {
        await manager.setServiceAddress(await address())
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            // A tick can be stuck in libslurm for a long time when the controller does not answer:
            // a graceful shutdown does not wait for it (it finishes, or not, on its own).
            let finished = LockedBox(false)
            let tick = Task {
                await manager.tick()
                finished.value = true
            }
            while !finished.value, !Task.isShuttingDownGracefully, !Task.isCancelled { try? await Task.sleep(for: .milliseconds(50)) }
            _ = tick
            try? await Task.sleep(for: interval)
        }
        await manager.shutdown(within: Self.shutdownSeconds)
    }

    /// The longest a stop waits for Slurm to cancel the pilot jobs.
    public static let shutdownSeconds = 8.0
}

extension PilotManager {
    /// Folds one job's observed queue wait into its pool's estimate.
    func learnQueueWait(pool: String, seconds: Double) {
        var state = poolStates[pool] ?? PoolState()
        state.queueWait = state.queueWait.map { 0.7 * $0 + 0.3 * seconds } ?? seconds
        poolStates[pool] = state
    }

    /// The queue wait the policy plans with (see `PilotPlan.queueWait`).
    func queueWait(pool: String, now: Date) -> Int64 {
        PilotPlan.queueWait(learned: poolStates[pool]?.queueWait, jobs: jobs.values.filter { $0.pool == pool }, now: now)
    }

    /// `dlhub_pilots{pool, state}`: pilot jobs by pool and Slurm state (pending, running, ...).
    func updatePilotGauges() {
        var counts: [String: Int] = [:]
        for pool in settings.pools {
            for state in ["PENDING", "RUNNING"] { counts[pool.name + "\u{1F}" + state] = 0 }
        }
        for job in jobs.values where job.endedAt == nil {
            counts[job.pool + "\u{1F}" + (job.info?.state.rawValue ?? "PENDING"), default: 0] += 1
        }
        for (key, n) in counts {
            let parts = key.split(separator: "\u{1F}", maxSplits: 1).map(String.init)
            Gauge(label: "dlhub_pilots", dimensions: [("pool", parts[0]), ("state", parts.count > 1 ? parts[1].lowercased() : "")]).record(
                n)
        }
    }

    /// Cancels the pilot jobs a stop should not leave behind, all at once, waiting at most
    /// `seconds`: a stop never hangs on an unreachable controller. Pending jobs are always
    /// cancelled; running ones too unless the settings keep them for the next start (their
    /// pilots keep their workers and reconnect). Jobs it could not cancel end at their walltime,
    /// or sooner, when their pilot gives up on the service.
    public func shutdown(within seconds: Double) async {
        stopping = true
        let alive = jobs.values.filter { $0.endedAt == nil }
        // Running: as Slurm said at the last tick, or as its connected pilot shows (it may have started since).
        let connected = Set(await dispatcher.allSessions().map(\.hello.jobID))
        let kept =
            settings.keepPilotsOnStop && settings.jobTable != nil
            ? alive.filter { $0.info?.state == .running || connected.contains($0.id) } : []
        let keptIDs = Set(kept.map(\.id))
        let cancelling = alive.map(\.id).filter { !keptIDs.contains($0) }
        if !kept.isEmpty {
            logger.info(
                "leaving running pilot jobs for the next start",
                metadata: [
                    "slurm.jobs": "\(kept.map { String($0.id) }.sorted().joined(separator: ","))",
                    "reconnect_grace_s": "\(settings.reconnectGraceSeconds)",
                ])
        }
        guard !cancelling.isEmpty else { return }
        for id in cancelling { jobs[id]?.endedAt = Date() }
        saveTable()
        let left = LockedBox(cancelling.count)
        let slurm = self.slurm
        for id in cancelling {
            Task.detached {
                try? await slurm.cancel(id)
                left.update { $0 -= 1 }
            }
        }
        let deadline = Date().addingTimeInterval(seconds)
        while left.value > 0, Date() < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        if left.value > 0 {
            logger.warning(
                "stopping without cancelling every pilot job: Slurm did not answer in time (is slurmctld up?); they end when their pilots find the service gone",
                metadata: ["slurm.jobs": "\(cancelling.map(String.init).joined(separator: ","))", "left": "\(left.value)"])
        }
    }

    /// Writes where pilots reach the service, for those reconnecting after a restart.
    func writeServiceFile() {
        guard let path = settings.serviceFile, !serviceAddress.isEmpty else { return }
        do throws(DLHubError) { try DurableFile.replace(path, Array((serviceAddress + "\n").utf8), mode: 0o644) } catch {
            logger.error("cannot write the pilot address file", metadata: ["path": "\(path)", "error": "\(error.message)"])
        }
    }
}
