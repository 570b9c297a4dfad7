import DLHubCore
import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix

/// Batched dispatch: a queue per servable (and parameter set), one worker key per servable
/// version and environment (`ServableSpec.key`: every parameter set of a servable runs on the
/// same workers, its parameters travelling with each batch), pilots that pull work with
/// credits, and the bookkeeping that makes a lost pilot cost a retry, never a lost or doubled
/// answer.
///
/// Items from many requests are handed to a pilot in one batch, up to the servable's maximum
/// batch size; when a pilot has a free slot, whatever is queued goes at once, so nothing waits
/// for a batch to fill. A batch is owned by the session it was sent to: results from any other
/// session (one presumed lost) are ignored.
///
/// The actor composes plain values, each with its own tests, and does their I/O:
/// - `QuotaLedger`: what each user has waiting, and item numbers;
/// - `BatchPlanner`: the queues, and which batch goes next;
/// - `PilotSessions`: the pilots, and which hold which servable;
/// - `LiveRequests`: requests answered from memory within their wait;
/// - `LoadFailures`: servables that failed to load, and when they are tried again;
/// - `RunningTasks` and `LostAttempts`: what is on pilots, what was cancelled under way, and
///   what keeps losing its pilots;
/// - `GroupCommit`: results on their way to the store, a write at a time;
/// - `ServableDirectory` and `DispatchMetrics`: names for people, and the metrics.
///
/// A request comes in here (`submit`, `submitLive`), goes to pilots in `Dispatcher+Pilots.swift`
/// and is answered in `Dispatcher+Answers.swift`.
public actor Dispatcher {
    /// Limits the dispatcher enforces (the service's configuration).
    public struct Limits: Sendable {
        /// Input bytes in one batch at most (a batch is cut below the pilot frame limit).
        public var batchBytes = 16 * 1024 * 1024
        /// Items one user may have waiting for an answer.
        public var queuedItemsPerUser = 100_000
        /// Input bytes one user may have waiting for an answer.
        public var queuedBytesPerUser: Int64 = 1 << 30
        /// Result-cache entries and bytes at most.
        public var cacheEntries = 100_000
        public var cacheBytes = 256 * 1024 * 1024
        /// Added to a batch's deadline before it is taken back from its pilot.
        public var batchMarginSeconds = 30.0
        public init() {}
    }

    let store: TaskStore
    let waiters: TaskWaiters
    let limits: Limits
    let cache: ResultCache
    let logs = ServableLogs()
    let logger: Logger

    var quota: QuotaLedger
    var planner: BatchPlanner
    var sessions = PilotSessions()
    var live = LiveRequests()
    var loadFailures = LoadFailures()
    var running = RunningTasks()
    var attempts = LostAttempts()
    var commits = GroupCommit()
    var directory = ServableDirectory()
    var metrics = DispatchMetrics()

    var waitTimer: (task: Task<Void, Never>, at: UInt64)?
    var nextBatchID: UInt64 = 1
    var nextSessionID = 1

    /// Requests served per version, for the web catalogue.
    public nonisolated let served = ServableUsage()
    /// Inputs answered from the result cache (counted also where no actor is entered).
    nonisolated let cacheHits = Counter(label: "dlhub_cache_hits_total")

    /// The event loop the dispatcher runs on, which is also the loop of every pilot connection
    /// (see `PilotListener`): a frame read from a pilot is handled, and the frames it causes are
    /// written, on the thread that read it, with no hand-off to another thread.
    public nonisolated let eventLoop: any EventLoop
    private nonisolated let executor: any SerialExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    public init(
        store: TaskStore, waiters: TaskWaiters, limits: Limits = Limits(), logger: Logger,
        eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next()
    ) {
        self.eventLoop = eventLoop
        executor = eventLoop.executor
        self.store = store
        self.waiters = waiters
        self.limits = limits
        self.logger = logger
        cache = ResultCache(capacity: limits.cacheEntries, maxBytes: limits.cacheBytes)
        planner = BatchPlanner(maxBatchBytes: limits.batchBytes)
        quota = QuotaLedger(maxItems: limits.queuedItemsPerUser, maxBytes: limits.queuedBytesPerUser)
    }

    // MARK: Work in

    /// Counts items against their owner's quota before they are accepted; a user over quota gets
    /// a 429 that says when to come back, and nothing of theirs is written.
    @discardableResult
    public func reserve(owner: String, items: Int, bytes: Int) throws(DLHubError) -> [UInt64] {
        do throws(DLHubError) {
            return Array(try quota.reserve(owner: owner, items: items, bytes: bytes))
        } catch {
            metrics.itemsRefused.increment(by: items)
            throw error
        }
    }

    /// Gives back a reservation whose items were never accepted.
    public func unreserve(owner: String, items: Int, bytes: Int) {
        quota.unreserve(owner: owner, items: items, bytes: bytes)
    }

    /// Ties accepted items to their owner's reservation (released as each is answered).
    public func register(_ items: [QueuedItem]) { quota.register(items) }

    /// Restores the quota count for items accepted before a restart.
    public func restoreReservations(_ items: [QueuedItem]) { quota.restore(items) }

    /// Numbers items after those a previous run of the service gave out.
    public func startItemIDs(after used: UInt64) { quota.startItemIDs(after: used) }

    /// What `submit` does with accepted items that no cache answers.
    public enum Next: Sendable {
        case enqueue(key: String, spec: ServableSpec, metadata: ServableMetadata, pool: String, parameters: [UInt8], waitingFor: String?)
        case fail(String)
    }

    /// Takes accepted items in one step: ties them to their owner's reservation, keeps a live
    /// task in memory (when `live` is given), answers what the result cache can (`cacheKey`), and
    /// queues or fails the rest.
    public func submit(_ items: [QueuedItem], live entry: LiveTasks.Entry?, cacheKey: String?, then next: Next) async {
        quota.register(items)
        if let entry { live.tasks.add(entry) }
        var items = items
        if let cacheKey { items = await answerFromCache(key: cacheKey, items: items) }
        guard !items.isEmpty else { return }
        switch next {
        case .enqueue(let key, let spec, let metadata, let pool, let parameters, let waitingFor):
            // A servable that failed to load is not waited for until it may be tried again.
            if let failure = loadFailures.blocking(spec.key, now: Date()), !isLoadedOrLoading(spec.key) {
                await fail(items, LoadFailures.message(failure, now: Date()))
                return
            }
            enqueue(key: key, spec: spec, metadata: metadata, pool: pool, parameters: parameters, items: items, waitingFor: waitingFor)
        case .fail(let message):
            await fail(items, message)
        }
    }

    /// A request whose caller waits: reserved against the owner's quota, queued (or answered
    /// from the cache) and waited for, in one call. `build` makes the items and the live task
    /// from the item ids. Returns the task when it finished within `seconds`, nil when the wait
    /// ran out first (then `persistLive` stores it).
    public func submitLive(
        owner: String, count: Int, bytes: Int, wait seconds: Double, cacheKey: String?, then next: Next,
        build: @Sendable ([UInt64]) -> ([QueuedItem], LiveTasks.Entry)
    ) async throws(DLHubError) -> LiveTasks.Entry? {
        let itemIDs = try reserve(owner: owner, items: count, bytes: bytes)
        let (items, entry) = build(itemIDs)
        await submit(items, live: entry, cacheKey: cacheKey, then: next)
        return await waitLive(entry.id, seconds: seconds)
    }

    /// Queues accepted items for a servable version on a pool.
    ///
    /// `waitingFor` names an environment still being built: the items wait for it (see
    /// `environmentFinished`).
    public func enqueue(
        key: String, spec: ServableSpec, metadata: ServableMetadata, pool: String, parameters: [UInt8], items: [QueuedItem],
        waitingFor environment: String? = nil
    ) {
        directory.note(spec, metadata: metadata)
        planner.add(
            key,
            template: BatchPlanner.Queue(
                spec: spec, metadata: metadata, pool: pool, parameters: parameters, waitingForEnvironment: environment),
            items: items)
        updateGauge()
        pump()
    }

    // MARK: The result cache

    /// Answers from the result cache what a deterministic servable already computed for this
    /// caller; returns the items still to run. The cache is per caller, so a hit tells nobody
    /// what anybody else sent.
    public func answerFromCache(key: String, items: [QueuedItem]) async -> [QueuedItem] {
        var hits: [ItemResult] = []
        var misses: [QueuedItem] = []
        for item in items {
            if let output = cache.get(ResultCache.key(key, item.owner, item.payload)) {
                hits.append(ItemResult(id: item.id, outcome: .output(output)))
            } else {
                misses.append(item)
            }
        }
        if !hits.isEmpty {
            cacheHits.increment(by: hits.count)
            await record(hits)
        }
        return misses
    }

    /// The cached outputs of every input of a request, when the cache holds them all (then the
    /// request needs nothing else; the cache is thread-safe and per caller).
    public nonisolated func cachedOutputs(key: String, owner: String, payloads: [[UInt8]]) -> [[UInt8]]? {
        var outputs: [[UInt8]] = []
        outputs.reserveCapacity(payloads.count)
        for payload in payloads {
            guard let output = cache.get(ResultCache.key(key, owner, payload)) else { return nil }
            outputs.append(output)
        }
        cacheHits.increment(by: outputs.count)
        return outputs
    }

    // MARK: Waiting in memory

    /// Waits up to `seconds` for a live task; returns it (and forgets it) once finished, nil
    /// when the wait ran out first.
    public func waitLive(_ id: String, seconds: Double) async -> LiveTasks.Entry? {
        if live.tasks.task(id)?.finished != nil { return live.tasks.remove(id) }
        guard seconds > 0, !live.stopping else { return nil }
        let answered: LiveTasks.Entry? = await withCheckedContinuation { waiter in
            let now = DispatchTime.now().uptimeNanoseconds
            guard live.park(id, waiter, until: now + UInt64(seconds * 1e9)) else { return waiter.resume(returning: nil) }
            armWaitTimer(now: now)
        }
        if answered != nil || live.tasks.task(id)?.finished != nil { return live.tasks.remove(id) ?? answered }
        return nil
    }

    /// One timer, for the earliest deadline of a parked request (set again when a nearer one comes).
    func armWaitTimer(now: UInt64) {
        guard let next = live.earliestDeadline else { return }
        if let armed = waitTimer, armed.at <= next { return }
        waitTimer?.task.cancel()
        let delay = next > now ? next - now : 0
        waitTimer = (
            Task { [weak self] in
                do { try await Task.sleep(nanoseconds: delay) } catch { return }
                await self?.waitsRanOut()
            }, next
        )
    }

    /// Answers the requests whose wait ran out (`persistLive` then stores their tasks).
    func waitsRanOut() {
        waitTimer = nil
        let now = DispatchTime.now().uptimeNanoseconds
        for waiter in live.expired(now: now) { waiter.resume(returning: nil) }
        armWaitTimer(now: now)
    }

    /// A graceful stop: every parked request is answered now (`persistLive` then stores its task,
    /// and the client gets its id), and none parks from now on.
    public func stopWaiting() {
        for waiter in live.stop() { waiter.resume(returning: nil) }
        waitTimer?.task.cancel()
        waitTimer = nil
    }

    /// The wait of a live task ran out: writes it to the store (with what it has so far) so that
    /// its id can be handed out. Returns the task instead when it finished meanwhile.
    public func persistLive(_ id: String) async throws(DLHubError) -> LiveTasks.Entry? {
        guard let snapshot = live.tasks.beginPersisting(id) else { return nil }
        if snapshot.finished != nil { return live.tasks.remove(id) }
        do {
            _ = try await store.accept(snapshot.newTask)
        } catch {
            live.tasks.abandon(id)
            throw error
        }
        guard let entry = live.tasks.remove(id), !entry.late.isEmpty else { return nil }
        do {
            let finished = try await store.complete(entry.late)
            await waiters.finished(finished)
        } catch {
            logger.error("cannot record results", metadata: ["error": "\(error)"])
        }
        return nil
    }

    /// Tasks waiting in memory (for the metrics and tests).
    public var liveTasks: Int { live.tasks.count }

    // MARK: Observation for the pilot manager and the API

    public struct PoolLoad: Sendable {
        public var queuedItems: Int
        public var sessions: [Session]
    }

    public func load(pool: String) -> PoolLoad {
        PoolLoad(queuedItems: planner.pending(pool: pool), sessions: sessions.values.filter { $0.hello.pool == pool })
    }

    public func allSessions() -> [Session] { Array(sessions.values) }

    /// A resident servable as `caller` may know it (see `ServableDirectory`).
    public func displayName(_ key: String, for caller: Caller?) -> String { directory.displayName(key, for: caller) }

    /// The latest load failure of a servable version, for `dlhub describe`.
    public func loadFailure(digest: String) -> JSONValue? {
        loadFailures.latest(digest: digest).map { LoadFailures.json($0, now: Date()) }
    }

    /// What the workers of a servable version said (see `ServableLogs`).
    public func logEntries(digest: String) -> [JSONValue] { logs.entries(for: digest).map(\.json) }

    /// Whether some of a task's items are on a pilot now.
    public func isRunning(_ taskID: String) -> Bool { running.isRunning(taskID) }

    /// Whether a servable version's queue is waiting for its environment.
    public func isWaitingForEnvironment(digest: String) -> Bool {
        planner.queues.values.contains { $0.spec.digest == digest && $0.waitingForEnvironment != nil }
    }

    func updateGauge() { metrics.queued.record(planner.pending) }
}
