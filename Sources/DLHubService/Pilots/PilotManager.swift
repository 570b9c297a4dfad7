import DLHubCore
import Foundation
import Logging
import Metrics
import ServiceLifecycle

/// Submits, watches and releases pilot jobs through libslurm, pool by pool.
///
/// Each tick it reads the state of every pilot job it submitted (never by parsing `squeue`),
/// hands lost ones to the dispatcher for re-queueing, and carries out what `PoolPolicy` decides.
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

    /// A job from the previous run, once Slurm said what became of it: a running one is adopted
    /// (its pilot reconnects), a pending one cancelled (it would start and find nobody), one of a
    /// pool no longer configured cancelled too.
    func review(_ id: UInt32, _ info: JobInfo?, now: Date) async {
        guard let job = jobs[id] else { return }
        jobs[id]?.fromPreviousRun = false
        jobs[id]?.waitLearned = true
        guard let info, !info.state.isFinished else {
            jobs[id]?.endedAt = now
            return
        }
        let configured = settings.pools.contains { $0.name == job.pool }
        if info.state == .running, configured {
            jobs[id]?.adoptedAt = now
            // Said once, however many restarts it lives through (the table keeps the reason).
            let adopted = "adopted after a service restart"
            jobs[id]?.reason = job.reason.hasPrefix(adopted) ? job.reason : "\(adopted) (submitted: \(job.reason))"
            logger.info("pilot job of the previous run adopted", metadata: ["slurm.job_id": "\(id)", "pilot.pool": "\(job.pool)"])
            return
        }
        let why =
            configured
            ? "pending when the service restarted: cancelled (it would have started and found nobody)"
            : "its pool \(job.pool) is no longer configured: cancelled"
        jobs[id]?.endedAt = now
        jobs[id]?.reason = why
        logger.info("pilot job of the previous run cancelled", metadata: ["slurm.job_id": "\(id)", "reason": "\(why)"])
        do throws(DLHubError) { try await slurm.cancel(id) } catch {
            logger.warning(
                "cannot cancel a pilot job of the previous run", metadata: ["slurm.job_id": "\(id)", "error": "\(error.message)"])
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

    /// One round: observe every job, then act on every pool.
    public func tick(now: Date = Date()) async {
        // One call for every pilot job this service tracks (not one per job).
        let tracked = jobs.filter { $0.value.endedAt == nil }.map(\.key)
        var infos: [UInt32: JobInfo]?
        do { infos = try await slurm.jobs(tracked) } catch {
            logger.warning("cannot read pilot job states", metadata: ["error": "\(error)"])
        }
        let ended = jobs.values.filter { $0.endedAt != nil }.count
        if !swept, infos != nil { await sweepUntracked() }
        if let infos {
            for (id, job) in jobs where job.fromPreviousRun { await review(id, infos[id], now: now) }
        }
        // An adopted job whose pilot does not come back within its grace period holds a node for nothing.
        let graceEnd = Double(settings.reconnectGraceSeconds) + 30
        let connectedJobs = Set(await dispatcher.allSessions().map(\.hello.jobID))
        for (id, job) in jobs where job.endedAt == nil && !connectedJobs.contains(id) {
            guard let adopted = job.adoptedAt, now.timeIntervalSince(adopted) > graceEnd else { continue }
            jobs[id]?.adoptedAt = nil
            jobs[id]?.drainRequested = true
            jobs[id]?.reason = "adopted after a restart, but its pilot did not reconnect: cancelled"
            logger.warning("adopted pilot job did not reconnect; cancelling it", metadata: ["slurm.job_id": "\(id)"])
            try? await slurm.cancel(id)
        }
        for (id, job) in jobs where job.endedAt == nil && !job.fromPreviousRun {
            guard let infos else { break }
            if connectedJobs.contains(id) { jobs[id]?.adoptedAt = nil }
            if let info = infos[id] {
                let wasRunning = job.info?.state == .running
                jobs[id]?.info = info
                if !job.waitLearned, info.startTime > 0, info.submitTime > 0, info.state == .running || info.state.isFinished {
                    jobs[id]?.waitLearned = true
                    learnQueueWait(pool: job.pool, seconds: Double(max(0, info.startTime - info.submitTime)))
                }
                if wasRunning, info.state == .pending {
                    // Requeued under us (a site default): its pilot is gone; replace it rather than wait.
                    jobs[id]?.endedAt = now
                    jobs[id]?.reason = "requeued by Slurm (\(info.reason)); cancelled and replaced"
                    try? await slurm.cancel(id)
                    await dispatcher.jobEnded(id, reason: "job requeued by Slurm")
                } else if info.state.isFinished {
                    jobs[id]?.endedAt = now
                    await dispatcher.jobEnded(
                        id, reason: "job \(info.state.rawValue)\(info.reason == "None" ? "" : " (\(info.reason))")")
                    logger.info(
                        "pilot job ended",
                        metadata: ["slurm.job_id": "\(id)", "slurm.state": "\(info.state.rawValue)", "slurm.reason": "\(info.reason)"])
                }
            } else {
                jobs[id]?.endedAt = now
                jobs[id]?.reason = "vanished from the controller"
                await dispatcher.jobEnded(id, reason: "job vanished from the controller")
                logger.warning("pilot job vanished from the controller", metadata: ["slurm.job_id": "\(id)"])
            }
        }
        if jobs.values.filter({ $0.endedAt != nil }).count != ended { saveTable() }
        // Forget jobs that ended a while ago.
        jobs = jobs.filter { $0.value.endedAt.map { now.timeIntervalSince($0) < 120 } ?? true }
        await dispatcher.reapSilentSessions(olderThan: 60)
        await dispatcher.reapOverdueBatches()

        for pool in settings.pools {
            let load = await dispatcher.load(pool: pool.name)
            let sessionsByJob = Dictionary(grouping: load.sessions, by: { $0.hello.jobID })
            var pilots: [PoolPolicy.Pilot] = []
            for job in jobs.values where job.pool == pool.name && job.endedAt == nil {
                let sessions = sessionsByJob[job.id] ?? []
                let idleSince = sessions.map(\.idleSince).max() ?? job.submittedAt
                pilots.append(
                    PoolPolicy.Pilot(
                        jobID: job.id, state: job.info?.state ?? .pending,
                        endTime: job.info?.state == .running ? job.info?.endTime ?? 0 : 0,
                        connected: !sessions.isEmpty, draining: job.drainRequested || sessions.contains { $0.draining },
                        busy: sessions.reduce(0) { $0 + $1.busy }, slots: max(1, sessions.reduce(0) { $0 + $1.slots }),
                        idleSince: Int64(idleSince.timeIntervalSince1970), replaced: job.replaced))
            }
            var state = poolStates[pool.name] ?? PoolState()
            let retryDue = state.nextAttempt <= now
            let snapshot = PoolPolicy.Snapshot(
                now: Int64(now.timeIntervalSince1970), pilots: pilots, queuedItems: load.queuedItems, paused: !retryDue,
                queueWait: queueWait(pool: pool.name, now: now))
            for action in PoolPolicy.actions(pool: pool, snapshot: snapshot) {
                switch action {
                case .submit(let reason):
                    await submit(pool, reason: reason, state: &state, now: now)
                case .submitReplacement(let old):
                    if await submit(pool, reason: "replacing job \(old) before its walltime ends", state: &state, now: now) {
                        jobs[old]?.replaced = true
                    }
                case .drain(let id, let reason):
                    jobs[id]?.drainRequested = true
                    await dispatcher.drain(jobID: id, reason: reason)
                    if !(sessionsByJob[id]?.isEmpty ?? true) { continue }
                    // Not connected (still pending, or never came up): nothing to drain, so cancel.
                    try? await slurm.cancel(id)
                }
            }
            poolStates[pool.name] = state
        }
        updatePilotGauges()
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

    /// The queue wait the policy plans with: the learned one, or longer while a job of the pool
    /// has already been pending longer than that (the cluster got busier).
    func queueWait(pool: String, now: Date) -> Int64 {
        let learned = poolStates[pool]?.queueWait ?? 0
        let pendingFor =
            jobs.values.filter { $0.pool == pool && $0.endedAt == nil && ($0.info?.state ?? .pending) == .pending }
            .map { now.timeIntervalSince($0.submittedAt) }.max() ?? 0
        return Int64(max(learned, pendingFor))
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
