import DLHubCore
import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix

/// Batched dispatch: a queue per servable (and parameter set), one worker key per servable
/// version and environment (`ServableSpec.key`: every parameter set of a servable runs on the
/// same workers, its parameters travelling with each batch), pilots that pull work with credits, and the bookkeeping that makes a lost pilot cost a retry, never a lost or doubled
/// answer.
///
/// Items from many requests are handed to a pilot in one batch, up to the servable's maximum
/// batch size; when a pilot has a free slot, whatever is queued goes at once, so nothing waits
/// for a batch to fill. A batch is owned by the session it was sent to: results from any other
/// session (one presumed lost) are ignored.
public actor Dispatcher {
    /// One accepted input waiting to run.
    public struct QueuedItem: Sendable {
        public var id: UInt64
        public var taskID: String
        /// Who sent it (a login): a batch's stderr goes to the servable's owner only when all its
        /// items are the owner's.
        public var owner: String
        /// The input as JSON bytes, forwarded to the pilot as they are.
        public var payload: [UInt8]
        /// Its output may go to the result cache (a deterministic servable, and the request did
        /// not say `"cache": false`).
        public var cacheable: Bool
        /// When it was queued (monotonic nanoseconds): its queue wait and latency are measured from here.
        public var queuedAt: UInt64

        public init(id: UInt64, taskID: String, owner: String, payload: [UInt8], cacheable: Bool = true) {
            self.id = id
            self.taskID = taskID
            self.owner = owner
            self.payload = payload
            self.cacheable = cacheable
            queuedAt = DispatchTime.now().uptimeNanoseconds
        }
    }

    /// A batch on a pilot: what the service needs to settle it without its queue.
    struct InFlight {
        /// The queue it came from (and goes back to), and what the pilot runs it on.
        var key: String
        var workerKey: String
        var items: [QueuedItem]
        var sentAt: Date
        /// When the batch is taken back if no result came (the worker timeout for the batch and
        /// for each item run alone, plus a margin).
        var deadline: Date
        var digest: String
        var deterministic: Bool
        var servableOwner: String?
        /// `owner/name`: what the latency metrics are labelled with.
        var servable: String
    }

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

    public struct Session: Sendable {
        public var id: Int
        public var hello: PilotHello
        public var connectedAt: Date
        public var slots: Int
        public var loaded: Set<String> = []
        public var loading: Set<String> = []
        public var draining = false
        public var idleSince: Date
        public var lastHeard: Date
        public var status: JSONValue = [:]
        var inFlight: [UInt64: InFlight] = [:]
        let outbound: PilotOutbound

        /// Slots taken: batches on the pilot and loads under way (a load starts a worker, which
        /// takes a core and a place under the pilot's worker limit as a batch does).
        public var busy: Int { inFlight.count + loading.count }
        public var runningBatches: Int { inFlight.count }
    }

    let store: TaskStore
    let waiters: TaskWaiters
    let limits: Limits
    let cache: ResultCache
    let logs = ServableLogs()
    let logger: Logger
    var planner: BatchPlanner
    /// `owner/name@N` for each queue key, for people, and who may see it.
    var labels: [String: Label] = [:]
    /// Who each unanswered item belongs to, and its size: what quotas count.
    var ledger: [UInt64: (owner: String, bytes: Int)] = [:]
    var usage: [String: (items: Int, bytes: Int64)] = [:]
    var sessions = PilotSessions()
    /// Servables that failed to load, and when each is tried again (see `LoadFailures`).
    var loadFailures = LoadFailures()
    /// Queues whose servable may not be loaded yet: their items are failed by `failBlocked`.
    var blocked: Set<String> = []
    var failingBlocked = false
    var nextBatchID: UInt64 = 1
    /// Tasks with items on pilots, and how many.
    var runningTasks: [String: Int] = [:]
    var nextSessionID = 1
    /// Requests waiting for their answer in memory (see `LiveTasks`).
    var live = LiveTasks()
    /// When parked requests stop waiting, and the one timer for the earliest.
    var deadlines = WaitDeadlines()
    var waitTimer: (task: Task<Void, Never>, at: UInt64)?
    /// The service is stopping: requests no longer wait in memory (see `stopWaiting`).
    var stopping = false
    /// Tasks cancelled while some of their items ran, with the message: those items, handed
    /// back or put back after a lost pilot, are answered with it instead of running again.
    var cancelledTasks: [String: String] = [:]
    /// The next item id: the service numbers items, live or stored, in one space.
    var nextItemID: UInt64 = 1
    /// Pilots lost while holding an item (kept in the store too, for items stored there).
    var lostAttempts: [UInt64: Int] = [:]
    /// Results for stored tasks waiting for the write under way (see `commit`).
    var storeBacklog: [ItemResult] = []
    /// The interpreter each servable key's workers run (its environment), for rebuilds.
    var interpreters: [String: String] = [:]
    var committing = false
    /// Attempts after which an item whose pilots keep vanishing is failed.
    let maxAttempts = 3

    let itemsDispatched = Counter(label: "dlhub_items_dispatched_total")
    let batchesDispatched = Counter(label: "dlhub_batches_dispatched_total")
    let itemsRequeued = Counter(label: "dlhub_items_requeued_total")
    /// Items a pilot handed back unstarted because their servable had just been evicted there.
    let itemsReturned = Counter(label: "dlhub_items_returned_total")
    let cacheHits = Counter(label: "dlhub_cache_hits_total")
    let queuedGauge = Gauge(label: "dlhub_items_queued")
    let batchSizes = Recorder(label: "dlhub_batch_size")
    var servableMetrics: [String: ServableMetrics] = [:]
    /// Requests served per version, for the web catalogue.
    public nonisolated let served = ServableUsage()

    let itemsRefused = Counter(label: "dlhub_items_refused_over_quota_total")
    let batchesTakenBack = Counter(label: "dlhub_batches_taken_back_total")

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
    }

    /// A queue key's name for people, and who may see it.
    struct Label {
        var name: String
        var owner: String
        var visibleTo: [Principal]
    }

    // MARK: Work in

    /// Counts items against their owner's quota before they are accepted; a user over quota gets
    /// a 429 that says when to come back, and nothing of theirs is written.
    @discardableResult
    public func reserve(owner: String, items: Int, bytes: Int) throws(DLHubError) -> [UInt64] {
        let current = usage[owner] ?? (0, 0)
        guard current.items + items <= limits.queuedItemsPerUser, current.bytes + Int64(bytes) <= limits.queuedBytesPerUser else {
            itemsRefused.increment(by: items)
            throw DLHubError(
                .quotaExceeded,
                "you have \(current.items) input(s) (\(current.bytes) bytes) waiting for answers; the limit is \(limits.queuedItemsPerUser) inputs and \(limits.queuedBytesPerUser) bytes per user. Wait for some to finish, then send the rest"
            )
        }
        usage[owner] = (current.items + items, current.bytes + Int64(bytes))
        defer { nextItemID += UInt64(items) }
        return Array(nextItemID..<nextItemID + UInt64(items))
    }

    /// Numbers items after those a previous run of the service gave out.
    public func startItemIDs(after used: UInt64) {
        nextItemID = max(nextItemID, used + 1)
    }

    /// What `submit` does with accepted items that no cache answers.
    public enum Next: Sendable {
        case enqueue(key: String, spec: ServableSpec, metadata: ServableMetadata, pool: String, parameters: [UInt8], waitingFor: String?)
        case fail(String)
    }

    /// Takes accepted items in one step: ties them to their owner's reservation, keeps a live
    /// task in memory (when `live` is given), answers what the result cache can (`cacheKey`), and
    /// queues or fails the rest.
    public func submit(_ items: [QueuedItem], live entry: LiveTasks.Entry?, cacheKey: String?, then next: Next) async {
        register(items)
        if let entry { live.add(entry) }
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

    // MARK: Live tasks
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

    /// Waits up to `seconds` for a live task; returns it (and forgets it) once finished, nil
    /// when the wait ran out first.
    public func waitLive(_ id: String, seconds: Double) async -> LiveTasks.Entry? {
        if live.task(id)?.finished != nil { return live.remove(id) }
        guard seconds > 0, !stopping else { return nil }
        let answered: LiveTasks.Entry? = await withCheckedContinuation { waiter in
            guard live.park(id, waiter) else { return waiter.resume(returning: nil) }
            let now = DispatchTime.now().uptimeNanoseconds
            deadlines.add(id, at: now + UInt64(seconds * 1e9))
            if deadlines.count > 2 * live.count + 1024 { deadlines.compact { live.isParked($0) } }
            armWaitTimer(now: now)
        }
        if answered != nil || live.task(id)?.finished != nil { return live.remove(id) ?? answered }
        return nil
    }

    /// One timer, for the earliest deadline of a parked request (set again when a nearer one comes).
    func armWaitTimer(now: UInt64) {
        guard let next = deadlines.earliest else { return }
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

    /// A graceful stop: every parked request is answered now (`persistLive` then stores its task,
    /// and the client gets its id), and none parks from now on, so that a stop does not wait out
    /// the longest `?wait=` in flight (found by the soak: an hour's wait held the stop an hour).
    public func stopWaiting() {
        stopping = true
        for id in deadlines.expired(now: .max) { live.unpark(id)?.resume(returning: nil) }
        waitTimer?.task.cancel()
        waitTimer = nil
    }

    /// Answers the requests whose wait ran out (`persistLive` then stores their tasks).
    func waitsRanOut() {
        waitTimer = nil
        let now = DispatchTime.now().uptimeNanoseconds
        for id in deadlines.expired(now: now) { live.unpark(id)?.resume(returning: nil) }
        armWaitTimer(now: now)
    }

    /// The wait of a live task ran out: writes it to the store (with what it has so far) so that
    /// its id can be handed out. Returns the task instead when it finished meanwhile.
    public func persistLive(_ id: String) async throws(DLHubError) -> LiveTasks.Entry? {
        guard let snapshot = live.beginPersisting(id) else { return nil }
        if snapshot.finished != nil { return live.remove(id) }
        do {
            _ = try await store.accept(snapshot.newTask)
        } catch {
            live.abandon(id)
            throw error
        }
        guard let entry = live.remove(id), !entry.late.isEmpty else { return nil }
        do {
            let finished = try await store.complete(entry.late)
            await waiters.finished(finished)
        } catch {
            logger.error("cannot record results", metadata: ["error": "\(error)"])
        }
        return nil
    }

    /// Tasks waiting in memory (for the metrics and tests).
    public var liveTasks: Int { live.count }

    /// Gives back a reservation whose items were never accepted.
    public func unreserve(owner: String, items: Int, bytes: Int) {
        release(owner, items: items, bytes: Int64(bytes))
    }

    /// Ties accepted items to their owner's reservation (released as each is answered).
    public func register(_ items: [QueuedItem]) {
        for item in items { ledger[item.id] = (item.owner, item.payload.count) }
    }

    /// Restores the quota count for items accepted before a restart.
    public func restoreReservations(_ items: [QueuedItem]) {
        for item in items where ledger[item.id] == nil {
            ledger[item.id] = (item.owner, item.payload.count)
            let current = usage[item.owner] ?? (0, 0)
            usage[item.owner] = (current.items + 1, current.bytes + Int64(item.payload.count))
        }
    }

    func release(_ owner: String, items: Int, bytes: Int64) {
        guard let current = usage[owner] else { return }
        let left = (items: max(0, current.items - items), bytes: max(0, current.bytes - bytes))
        usage[owner] = left.items == 0 ? nil : left
    }

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

    /// Queues accepted items for a servable version on a pool.
    ///
    /// `waitingFor` names an environment still being built: the items wait for it (see
    /// `environmentFinished`).
    public func enqueue(
        key: String, spec: ServableSpec, metadata: ServableMetadata, pool: String, parameters: [UInt8], items: [QueuedItem],
        waitingFor environment: String? = nil
    ) {
        if labels[spec.key] == nil {
            let d = spec.metadata["dlhub"]
            labels[spec.key] = Label(
                name: "\(d?["owner"]?.stringValue ?? "?")/\(d?["name"]?.stringValue ?? "?")@\(d?["version"]?.intValue ?? 0)",
                owner: metadata.owner ?? "", visibleTo: metadata.visibleTo)
        }
        if let interpreter = spec.environment.interpreter, !interpreter.isEmpty { interpreters[spec.key] = interpreter }
        planner.add(
            key,
            template: BatchPlanner.Queue(
                spec: spec, metadata: metadata, pool: pool, parameters: parameters, waitingForEnvironment: environment),
            items: items)
        updateGauge()
        pump()
    }

    // MARK: Pilots

    /// A session number for a pilot in its handshake (sent in the welcome).
    public func reserveSessionID() -> Int {
        defer { nextSessionID += 1 }
        return nextSessionID
    }

    /// Registers a pilot that completed the mutual proof; frames for it go to `outbound`.
    public func attach(session id: Int, hello: PilotHello, outbound: AsyncStream<PilotFrame>.Continuation) {
        attach(session: id, hello: hello, outbound: .stream(outbound))
    }

    /// Registers a pilot that completed the mutual proof; its frames go to `outbound`.
    public func attach(session id: Int, hello: PilotHello, outbound: PilotOutbound) {
        let now = Date()
        // A pilot reconnecting after a restart still has workers: their batches go to it at once.
        sessions.insert(
            Session(
                id: id, hello: hello, connectedAt: now, slots: max(1, hello.slots), loaded: Set(hello.resident), idleSince: now,
                lastHeard: now,
                outbound: outbound))
        logger.info(
            "pilot connected",
            metadata: [
                "slurm.job_id": "\(hello.jobID)", "pilot.node": "\(hello.node)", "pilot.pool": "\(hello.pool)",
                "pilot.slots": "\(hello.slots)", "pilot.isolation": "\(hello.isolation)", "pilot.resident": "\(hello.resident.count)",
            ])
        if case .unavailable(let mode, let reason) = IsolationStatus(parsing: hello.isolation) {
            logger.error(
                "the pilot's sandbox does not work on its node: it will refuse to start workers",
                metadata: [
                    "slurm.job_id": "\(hello.jobID)", "pilot.node": "\(hello.node)", "isolation": "\(mode.rawValue)", "reason": "\(reason)",
                ])
        } else if IsolationStatus(parsing: hello.isolation) == .available(.none) {
            logger.warning(
                "the pilot runs workers without a sandbox (isolation: none): any servable can act with the service account's rights",
                metadata: ["slurm.job_id": "\(hello.jobID)"])
        }
        pump()
    }

    /// A pilot's connection ended: what it held goes back to the queue (or fails after retries).
    public func detach(_ sessionID: Int, reason: String) async {
        guard let session = sessions.remove(sessionID) else { return }
        session.outbound.finish()
        loadFailures.sessionLeft(sessionID)
        let held = session.inFlight
        for b in held.values { landed(b.items) }
        if !held.isEmpty {
            logger.warning(
                "pilot lost with work in flight; re-queueing",
                metadata: ["slurm.job_id": "\(session.hello.jobID)", "reason": "\(reason)", "batches": "\(held.count)"])
            await requeue(Array(held.values), lostJob: session.hello.jobID, node: session.hello.node)
        } else {
            logger.info("pilot disconnected", metadata: ["slurm.job_id": "\(session.hello.jobID)", "reason": "\(reason)"])
        }
        pump()
    }

    /// Drops every session of a Slurm job the manager found ended or gone.
    public func jobEnded(_ jobID: UInt32, reason: String) async {
        for (id, s) in sessions where s.hello.jobID == jobID { await detach(id, reason: reason) }
    }

    /// Asks a job's pilots to stop taking work and leave.
    public func drain(jobID: UInt32, reason: String) {
        for (id, s) in sessions where s.hello.jobID == jobID && !s.draining {
            sessions.update(id) { $0.draining = true }
            s.outbound.yield(.drain(reason: reason))
            logger.info("draining pilot", metadata: ["slurm.job_id": "\(jobID)", "reason": "\(reason)"])
        }
    }

    /// Handles a frame from an authenticated pilot. Returns why the frame is refused when the
    /// pilot sent something the service did not ask for (the session is then dropped).
    public func received(_ frame: PilotFrame, from sessionID: Int) async -> String? {
        guard sessions[sessionID] != nil else { return nil }
        sessions.update(sessionID) { $0.lastHeard = Date() }
        switch frame {
        case .results(let results):
            await complete(results, from: sessionID)
        case .loaded(let key, let error, let log):
            guard let asked = sessions.update(sessionID, { $0.loading.remove(key) }), asked != nil else {
                return "loaded \(key), which the service never asked it to load"
            }
            recordLoadLog(key, error: error, log: log, sessionID: sessionID)
            if let error {
                let session = sessions[sessionID]!
                let failure = loadFailures.record(
                    key, digest: digest(ofWorker: key), error: error, session: sessionID, jobID: session.hello.jobID,
                    node: session.hello.node, now: Date())
                await failUnloadable(key, failure: failure)
            } else {
                loadFailures.loaded(key)
                sessions.load(key, on: sessionID)
            }
        case .unload(let key):
            sessions.unload(key, on: sessionID)
        case .returned(let key, let ids):
            // Sent while the pilot evicted the servable: back to the queue, not a failed attempt.
            sessions.unload(key, on: sessionID)
            let back = ids.compactMap { id in sessions.update(sessionID) { $0.inFlight.removeValue(forKey: id) } ?? nil }
            for b in back {
                landed(b.items)
                planner.putBack(b.key, template: nil, items: await withoutCancelled(b.items))
            }
            itemsReturned.increment(by: back.reduce(0) { $0 + $1.items.count })
        case .heartbeat(let status):
            sessions.update(sessionID) { $0.status = status }
        case .credit(let slots):
            sessions.update(sessionID) {
                $0.slots = min(max(0, slots), max(1, $0.hello.slots))
                if slots == 0 { $0.draining = true }
            }
        case .bye(let reason, let returned):
            let session = sessions[sessionID]!
            let back = returned.compactMap { id in sessions.update(sessionID) { $0.inFlight.removeValue(forKey: id) } ?? nil }
            if !back.isEmpty {
                // Handed back unstarted: not a failed attempt.
                for b in back {
                    landed(b.items)
                    planner.putBack(b.key, template: nil, items: await withoutCancelled(b.items))
                }
                itemsRequeued.increment(by: back.reduce(0) { $0 + $1.items.count })
            }
            logger.info(
                "pilot said bye",
                metadata: ["slurm.job_id": "\(session.hello.jobID)", "reason": "\(reason)", "returned.batches": "\(back.count)"])
            await detach(sessionID, reason: "bye: \(reason)")
        case .hello, .welcome, .authenticate, .load, .batch, .drain:
            return "a \(frame.name) frame, which only the service sends or which belongs to the handshake"
        }
        pump()
        return nil
    }

    func complete(_ results: BatchResults, from sessionID: Int) async {
        guard let batch = sessions.update(sessionID, { $0.inFlight.removeValue(forKey: results.batchID) }) ?? nil else {
            logger.debug("ignoring results for a batch this pilot does not hold", metadata: ["batch": "\(results.batchID)"])
            return
        }
        sessions.update(sessionID) { if $0.inFlight.isEmpty { $0.idleSince = Date() } }
        landed(batch.items)
        if !results.log.isEmpty, let owner = batch.servableOwner, batch.items.allSatisfy({ $0.owner == owner }) {
            let session = sessions[sessionID]!
            logs.append(
                batch.digest,
                .init(at: Date(), kind: .batch, error: nil, text: results.log, jobID: session.hello.jobID, node: session.hello.node))
        }
        let expected = Set(batch.items.map(\.id))
        var answered = results.items.filter { expected.contains($0.id) }
        let missing = expected.subtracting(answered.map(\.id))
        answered += missing.map { ItemResult(id: $0, outcome: .error("the pilot returned no result for this item")) }
        if batch.deterministic, batch.items.contains(where: \.cacheable) {
            let inputs = Dictionary(uniqueKeysWithValues: batch.items.map { ($0.id, $0) })
            for r in answered {
                if case .output(let bytes) = r.outcome, let item = inputs[r.id], item.cacheable {
                    cache.put(ResultCache.key(batch.key, item.owner, item.payload), bytes)
                }
            }
        }
        let latency = metrics(for: batch.servable).latency
        let now = DispatchTime.now().uptimeNanoseconds
        for item in batch.items { latency.recordNanoseconds(Int64(now &- item.queuedAt)) }
        served.record(digest: batch.digest, latencies: batch.items.map { Double(now &- $0.queuedAt) / 1e9 })
        await record(answered)
    }

    /// Per-servable histograms: queue wait (accepted to sent to a pilot) and latency (accepted
    /// to answered by a pilot), in seconds.
    struct ServableMetrics {
        var queueWait: Metrics.Timer
        var latency: Metrics.Timer
    }

    func metrics(for servable: String) -> ServableMetrics {
        if let known = servableMetrics[servable] { return known }
        if servableMetrics.count > 10_000 { servableMetrics.removeAll() }
        let made = ServableMetrics(
            queueWait: Metrics.Timer(label: "dlhub_queue_wait_seconds", dimensions: [("servable", servable)]),
            latency: Metrics.Timer(label: "dlhub_request_seconds", dimensions: [("servable", servable)]))
        servableMetrics[servable] = made
        return made
    }

    /// The `servable` label of the metrics, which `/metrics` shows to anyone: a public servable's
    /// `owner/name`; any other's is named by a prefix of its digest, so that a private servable's
    /// name does not reach people it is not shared with (its owner finds the digest in `describe`).
    static func servableLabel(_ metadata: ServableMetadata, digest: String) -> String {
        guard metadata.visibleTo.contains(.everyone) else { return "private:" + digest.prefix(12) }
        return "\(metadata.owner ?? "")/\(metadata.name)"
    }

    func record(_ results: [ItemResult]) async {
        for r in results {
            if let entry = ledger.removeValue(forKey: r.id) { release(entry.owner, items: 1, bytes: Int64(entry.bytes)) }
        }
        let (forStore, finished) = live.complete(results)
        for (waiter, entry) in finished { waiter.resume(returning: entry) }
        if !lostAttempts.isEmpty { for r in results { lostAttempts.removeValue(forKey: r.id) } }
        guard !forStore.isEmpty else { return }
        await commit(forStore)
    }

    /// Group commit: results for stored tasks that land while a write is under way go together
    /// in the next one, so a busy service writes once per round, not once per batch.
    func commit(_ results: [ItemResult]) async {
        storeBacklog += results
        guard !committing else { return }
        committing = true
        defer { committing = false }
        while !storeBacklog.isEmpty {
            let group = storeBacklog
            storeBacklog = []
            do {
                let finished = try await store.complete(group)
                await waiters.finished(finished)
            } catch {
                logger.error("cannot record results", metadata: ["error": "\(error)", "items": "\(group.count)"])
            }
        }
    }

    func requeue(_ batches: [InFlight], lostJob: UInt32, node: String) async {
        let ids = batches.flatMap { $0.items.map(\.id) }
        // Counted in memory for every item, and in the store for those kept there (a restart keeps the count).
        let stored = (try? await store.countAttempt(ids)) ?? [:]
        var attempts: [UInt64: Int] = [:]
        for id in ids {
            lostAttempts[id, default: 0] += 1
            attempts[id] = max(lostAttempts[id]!, stored[id] ?? 0)
        }
        var failed: [ItemResult] = []
        for b in batches {
            var again: [QueuedItem] = []
            for item in b.items {
                if (attempts[item.id] ?? 0) >= maxAttempts {
                    failed.append(
                        ItemResult(
                            id: item.id,
                            outcome: .error(
                                "the item was running on \(maxAttempts) pilot jobs that were lost (last: job \(lostJob) on \(node)); it may crash the node or the pilot"
                            )))
                } else {
                    again.append(item)
                }
            }
            let kept = await withoutCancelled(again)
            planner.putBack(b.key, template: nil, items: kept)
            itemsRequeued.increment(by: kept.count)
        }
        if !failed.isEmpty { await record(failed) }
    }

    /// Answers the items of tasks cancelled while they ran with the cancellation (found by the
    /// red team: a cancelled input whose pilot was then lost ran again on the next pilots, and
    /// its task ended `failed` after three); returns the others.
    func withoutCancelled(_ items: [QueuedItem]) async -> [QueuedItem] {
        guard !cancelledTasks.isEmpty else { return items }
        var kept: [QueuedItem] = []
        var answered: [ItemResult] = []
        for item in items {
            if let message = cancelledTasks[item.taskID] {
                answered.append(ItemResult(id: item.id, outcome: .error(message)))
            } else {
                kept.append(item)
            }
        }
        if !answered.isEmpty { await record(answered) }
        return kept
    }

    /// A servable no pilot can load fails its queued items with the loader's message.
    func failUnloadable(_ key: String, failure: LoadFailures.Failure) async {
        guard !isLoadedOrLoading(key) else { return }
        let items = queueKeys(ofWorker: key).flatMap { planner.drain($0) }
        logger.warning(
            "servable failed to load; failing its queued items until it is tried again",
            metadata: [
                "servable.key": "\(key)", "error": "\(failure.error)", "attempts": "\(failure.attempts)",
                "retry_in_s": "\(Int(failure.retryAt.timeIntervalSinceNow))",
            ])
        await fail(items, LoadFailures.message(failure, now: Date()))
        updateGauge()
    }

    func isLoadedOrLoading(_ key: String) -> Bool {
        sessions.values.contains { $0.loaded.contains(key) || $0.loading.contains(key) }
    }

    /// The queues (one per parameter set) whose items run on a worker key's workers.
    func queueKeys(ofWorker key: String) -> [String] {
        planner.queues.filter { $0.value.spec.key == key }.map(\.key)
    }

    /// The servable version a worker key runs.
    func digest(ofWorker key: String) -> String {
        planner.queues.values.first { $0.spec.key == key }?.spec.digest ?? key
    }

    /// Fails the items of queues whose servable may not be loaded yet (items put back from a
    /// lost pilot, or restored after a restart): nothing waits for a load that is not coming.
    func failBlocked() async {
        failingBlocked = false
        let keys = blocked
        blocked = []
        let now = Date()
        for key in keys {
            guard let failure = loadFailures.blocking(key, now: now), !isLoadedOrLoading(key) else { continue }
            await fail(queueKeys(ofWorker: key).flatMap { planner.drain($0) }, LoadFailures.message(failure, now: now))
        }
        updateGauge()
        pump()
    }

    /// The latest load failure of a servable version, for `dlhub describe`.
    public func loadFailure(digest: String) -> JSONValue? {
        loadFailures.latest(digest: digest).map { LoadFailures.json($0, now: Date()) }
    }

    // MARK: Matching work to pilots

    /// Hands queued work to pilots with free slots: queues take turns, one batch each per
    /// round (see `BatchPlanner`), and a busy servable gets one more pilot to load it.
    func pump() {
        var dispatched = true
        while dispatched {
            dispatched = false
            for key in planner.ready {
                guard let q = planner.queues[key] else { continue }
                // Only the pilots holding this servable (the index), not every pilot.
                let ready = sessions.holding(q.spec.key).filter { $0.hello.pool == q.pool && !$0.draining && $0.slots > $0.busy }
                guard let target = ready.max(by: { ($0.slots - $0.busy, $1.id) < ($1.slots - $1.busy, $0.id) }) else { continue }
                let free = ready.reduce(0) { $0 + ($1.slots - $1.busy) }
                let items = planner.take(key, freeSlots: free)
                guard !items.isEmpty else { continue }
                send(items, of: key, queue: q, to: target.id)
                dispatched = true
            }
        }
        // More work than the loaded pilots take: have one more pilot load the servable.
        let now = Date()
        for queueKey in planner.ready {
            guard let q = planner.queues[queueKey] else { continue }
            let key = q.spec.key
            let candidates = sessions.values.filter { $0.hello.pool == q.pool && !$0.draining }
            if candidates.contains(where: { $0.loading.contains(key) }) { continue }
            if !loadFailures.mayLoad(key, now: now) {
                if !isLoadedOrLoading(key) { blocked.insert(key) }
                continue
            }
            // The pilot with the fewest residents takes it: many servables spread over the pool
            // instead of filling one pilot until it evicts (found with 500 servables on 3 pilots);
            // on a retry after a failed load, a pilot it did not fail on comes first.
            let free = candidates.filter { !$0.loaded.contains(key) && $0.slots > $0.busy }
            func rank(_ s: Session) -> (Int, Int, Int) {
                (loadFailures.triedOn(key, session: s.id) ? 1 : 0, s.loaded.count + s.loading.count, s.id)
            }
            if let next = free.min(by: { rank($0) < rank($1) }) {
                sessions.update(next.id) { _ = $0.loading.insert(key) }
                next.outbound.yield(.load(q.spec))
            }
        }
        if !blocked.isEmpty, !failingBlocked {
            failingBlocked = true
            Task { await self.failBlocked() }
        }
        let needed = Set(sessions.values.flatMap { $0.inFlight.values.map(\.key) + Array($0.loading) })
        planner.dropEmpty(keeping: needed)
        let shown = Set(planner.queues.keys).union(sessions.loadedKeys).union(needed)
        if labels.count > shown.count * 2 + 100 { labels = labels.filter { shown.contains($0.key) } }
        updateGauge()
    }

    func send(_ items: [QueuedItem], of key: String, queue q: BatchPlanner.Queue, to sid: Int) {
        let batchID = nextBatchID
        nextBatchID += 1
        let now = Date()
        let label = Self.servableLabel(q.metadata, digest: q.spec.digest)
        // The pilot may run each item alone after a failure, each with the servable's timeout.
        let deadline = now.addingTimeInterval(q.metadata.timeoutSeconds * Double(items.count + 1) + limits.batchMarginSeconds)
        let flight = InFlight(
            key: key, workerKey: q.spec.key, items: items, sentAt: now, deadline: deadline, digest: q.spec.digest,
            deterministic: q.metadata.deterministic,
            servableOwner: q.metadata.owner, servable: label)
        sessions.update(sid) { $0.inFlight[batchID] = flight }
        sessions[sid]!.outbound.yield(
            .batch(
                Batch(
                    id: batchID, key: q.spec.key, parameters: q.parameters, timeoutSeconds: q.metadata.timeoutSeconds,
                    items: items.map { Batch.Item(id: $0.id, payload: $0.payload) })))
        for (task, n) in Self.runs(items) { runningTasks[task, default: 0] += n }
        itemsDispatched.increment(by: items.count)
        batchesDispatched.increment()
        batchSizes.record(items.count)
        let wait = metrics(for: label).queueWait
        let sent = DispatchTime.now().uptimeNanoseconds
        for item in items { wait.recordNanoseconds(Int64(sent &- item.queuedAt)) }
    }

    /// Batches a pilot has held past their deadline (a worker that hangs in a way the pilot does
    /// not catch, a pilot that stopped answering but not heartbeating): taken back, their items
    /// retried elsewhere or failed, like those of a lost pilot.
    public func reapOverdueBatches(now: Date = Date()) async {
        for (sid, session) in sessions {
            let overdue = session.inFlight.filter { $0.value.deadline < now }
            guard !overdue.isEmpty else { continue }
            sessions.update(sid) { for id in overdue.keys { $0.inFlight.removeValue(forKey: id) } }
            for b in overdue.values { landed(b.items) }
            batchesTakenBack.increment(by: overdue.count)
            logger.warning(
                "batches held past their deadline were taken back; draining the pilot",
                metadata: ["slurm.job_id": "\(session.hello.jobID)", "batches": "\(overdue.count)"])
            // A pilot that sits on work is not given more: it is drained, and the manager replaces it.
            if !session.draining {
                sessions.update(sid) { $0.draining = true }
                session.outbound.yield(.drain(reason: "a batch was held past its deadline"))
            }
            await requeue(Array(overdue.values), lostJob: session.hello.jobID, node: session.hello.node)
        }
        pump()
    }

    /// An environment build ended: its queues go to pilots, or fail with the installer's message.
    public func environmentFinished(_ id: String, status: EnvironmentStore.Status) async {
        for (key, queue) in planner.queues where queue.waitingForEnvironment == id {
            switch status {
            case .ready(let interpreter):
                loadFailures.forget([queue.spec.key])
                planner.setEnvironment(key, interpreter: interpreter)
                interpreters[queue.spec.key] = interpreter
            case .failed(let message):
                await fail(planner.drain(key), message)
                planner.setEnvironment(key, interpreter: "")
            case .building:
                break
            }
        }
        if case .building = status { environmentRebuilding(id) }
        updateGauge()
        pump()
    }

    /// An environment is being rebuilt (its directory is about to be replaced): the workers
    /// that run in it are unloaded from their pilots, and its queues wait for the new build, so
    /// no request reaches a worker whose environment vanished under it.
    func environmentRebuilding(_ id: String) {
        let marker = "/" + id + "/"
        for (key, interpreter) in interpreters where interpreter.contains(marker) {
            // A new build is a new chance to load.
            loadFailures.forget([key])
            for queue in queueKeys(ofWorker: key) { planner.hold(queue, for: id) }
            for session in sessions.holding(key) {
                sessions.unload(key, on: session.id)
                session.outbound.yield(.unload(key: key))
            }
        }
    }

    /// Whether a servable version's queue is waiting for its environment.
    public func isWaitingForEnvironment(digest: String) -> Bool {
        planner.queues.values.contains { $0.spec.digest == digest && $0.waitingForEnvironment != nil }
    }

    /// Fails items that waited past the retention: out of their queues, and answered.
    public func expire(_ results: [ItemResult]) async {
        let ids = Set(results.map(\.id))
        for key in planner.queues.keys { planner.remove(key, items: ids) }
        await record(results)
        pump()
    }

    /// Cancels a stored task: its items that are not on a pilot now (queued here, or still only
    /// in the store) are failed with `message` and never run; items already running finish and
    /// are answered as usual. Returns how many items were cancelled and how many were running.
    public func cancel(_ taskID: String, message: String) async throws(DLHubError) -> (cancelled: Int, running: Int) {
        for key in planner.queues.keys { _ = planner.remove(key, task: taskID) }
        var running = Set<UInt64>()
        for session in sessions.values {
            for batch in session.inFlight.values { for item in batch.items where item.taskID == taskID { running.insert(item.id) } }
        }
        try await store.markCancelled(taskID)
        if !running.isEmpty {
            if cancelledTasks.count >= 10_000 { cancelledTasks.removeAll() }
            cancelledTasks[taskID] = message
        }
        let cancelled = try await store.unanswered(task: taskID).filter { !running.contains($0) }
        for id in cancelled {
            if let entry = ledger.removeValue(forKey: id) { release(entry.owner, items: 1, bytes: Int64(entry.bytes)) }
        }
        let finished = try await store.complete(cancelled.map { ItemResult(id: $0, outcome: .error(message)) })
        await waiters.finished(finished)
        updateGauge()
        pump()
        return (cancelled.count, running.count)
    }

    /// Fails accepted items at once, with one message.
    public func fail(_ items: [QueuedItem], _ message: String) async {
        guard !items.isEmpty else { return }
        await record(items.map { ItemResult(id: $0.id, outcome: .error(message)) })
    }

    /// Keeps what a worker said while loading, for the servable's owner.
    func recordLoadLog(_ key: String, error: String?, log: String, sessionID: Int) {
        guard let session = sessions[sessionID] else { return }
        logs.append(
            self.digest(ofWorker: key),
            .init(at: Date(), kind: .load, error: error, text: log, jobID: session.hello.jobID, node: session.hello.node))
    }

    /// What the workers of a servable version said (see `ServableLogs`).
    public func logEntries(digest: String) -> [JSONValue] { logs.entries(for: digest).map(\.json) }

    /// Whether some of a task's items are on a pilot now.
    public func isRunning(_ taskID: String) -> Bool { (runningTasks[taskID] ?? 0) > 0 }

    /// Items of `batch` left the pilots (answered, or back to the queue).
    func landed(_ items: [QueuedItem]) {
        for (task, n) in Self.runs(items) {
            if let held = runningTasks[task], held > n {
                runningTasks[task] = held - n
            } else {
                runningTasks.removeValue(forKey: task)
            }
        }
    }

    /// Items counted by task, a run of neighbours at a time (a batch holds long runs of one task).
    static func runs(_ items: [QueuedItem]) -> [(String, Int)] {
        var out: [(String, Int)] = []
        for item in items {
            if let last = out.last, last.0 == item.taskID { out[out.count - 1].1 += 1 } else { out.append((item.taskID, 1)) }
        }
        return out
    }

    func updateGauge() {
        queuedGauge.record(planner.pending)
    }

    // MARK: Observation for the pilot manager and the API

    public struct PoolLoad: Sendable {
        public var queuedItems: Int
        public var sessions: [Session]
    }

    public func load(pool: String) -> PoolLoad {
        PoolLoad(
            queuedItems: planner.pending(pool: pool),
            sessions: sessions.values.filter { $0.hello.pool == pool })
    }

    public func allSessions() -> [Session] { Array(sessions.values) }

    /// A resident servable as `caller` may know it: its name, or "private" when they may not see it.
    public func displayName(_ key: String, for caller: Caller?) -> String {
        // No label: resident on a pilot since before a service restart and not asked for since
        // (its owner and visibility are not known here yet, so nothing of it is shown).
        guard let label = labels[key] else { return "(resident from before a restart)" }
        guard let caller else { return label.name }
        return AccessPolicy.canSee(owner: label.owner, visibleTo: label.visibleTo, caller: caller) ? label.name : "private"
    }

    /// Pilots that stopped heartbeating (a hung node): treated as lost.
    public func reapSilentSessions(olderThan seconds: TimeInterval) async {
        let now = Date()
        for (id, s) in sessions where now.timeIntervalSince(s.lastHeard) > seconds {
            await detach(id, reason: "no heartbeat for \(Int(now.timeIntervalSince(s.lastHeard))) s")
        }
    }
}
