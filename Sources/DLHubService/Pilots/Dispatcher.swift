import DLHubCore
import Foundation
import Logging
import Metrics

/// Batched dispatch: a queue per servable (and parameter set), pilots that pull work with
/// credits, and the bookkeeping that makes a lost pilot cost a retry, never a lost or doubled
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

        public init(id: UInt64, taskID: String, owner: String, payload: [UInt8]) {
            self.id = id
            self.taskID = taskID
            self.owner = owner
            self.payload = payload
        }
    }

    struct Queue {
        var spec: ServableSpec
        var metadata: ServableMetadata
        var pool: String
        var parameters: [UInt8]
        var items: [QueuedItem] = []
        /// The environment being built for this servable: nothing is dispatched until it is ready.
        var waitingForEnvironment: String?
    }

    struct InFlight {
        var key: String
        var items: [QueuedItem]
        var sentAt: Date
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
        let outbound: AsyncStream<PilotFrame>.Continuation

        public var busy: Int { inFlight.count }
    }

    let store: TaskStore
    let waiters: TaskWaiters
    let cache = ResultCache()
    let logs = ServableLogs()
    let logger: Logger
    var queues: [String: Queue] = [:]
    /// `owner/name@N` for each queue key, for people.
    var names: [String: String] = [:]
    var sessions: [Int: Session] = [:]
    var failedLoads: [String: [Int: String]] = [:]
    var nextBatchID: UInt64 = 1
    /// Tasks with items on pilots, and how many.
    var runningTasks: [String: Int] = [:]
    var nextSessionID = 1
    /// Attempts after which an item whose pilots keep vanishing is failed.
    let maxAttempts = 3

    let itemsDispatched = Counter(label: "dlhub_items_dispatched_total")
    let batchesDispatched = Counter(label: "dlhub_batches_dispatched_total")
    let itemsRequeued = Counter(label: "dlhub_items_requeued_total")
    let cacheHits = Counter(label: "dlhub_cache_hits_total")
    let queuedGauge = Gauge(label: "dlhub_items_queued")

    public init(store: TaskStore, waiters: TaskWaiters, logger: Logger) {
        self.store = store
        self.waiters = waiters
        self.logger = logger
    }

    // MARK: Work in

    /// Answers from the result cache what a deterministic servable already computed; returns the
    /// items still to run.
    public func answerFromCache(key: String, items: [QueuedItem]) async -> [QueuedItem] {
        var hits: [ItemResult] = []
        var misses: [QueuedItem] = []
        for item in items {
            if let output = cache.get(ResultCache.key(key, item.payload)) {
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

    /// Queues accepted items for a servable version on a pool.
    ///
    /// `waitingFor` names an environment still being built: the items wait for it (see
    /// `environmentFinished`).
    public func enqueue(
        key: String, spec: ServableSpec, metadata: ServableMetadata, pool: String, parameters: [UInt8], items: [QueuedItem],
        waitingFor environment: String? = nil
    ) {
        if queues[key] == nil {
            queues[key] = Queue(spec: spec, metadata: metadata, pool: pool, parameters: parameters, waitingForEnvironment: environment)
            let d = spec.metadata["dlhub"]
            names[key] =
                "\(d?["owner"]?.stringValue ?? "?")/\(d?["name"]?.stringValue ?? "?")@\(d?["version"]?.intValue ?? 0)"
                + (key.contains("+") ? "(params)" : "")
        }
        queues[key]!.items += items
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
        let now = Date()
        sessions[id] = Session(
            id: id, hello: hello, connectedAt: now, slots: max(1, hello.slots), idleSince: now, lastHeard: now, outbound: outbound)
        logger.info(
            "pilot connected",
            metadata: [
                "slurm.job_id": "\(hello.jobID)", "pilot.node": "\(hello.node)", "pilot.pool": "\(hello.pool)",
                "pilot.slots": "\(hello.slots)", "pilot.isolation": "\(hello.isolation)",
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
        guard let session = sessions.removeValue(forKey: sessionID) else { return }
        session.outbound.finish()
        for (k, v) in failedLoads { failedLoads[k] = v.filter { $0.key != sessionID } }
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
            sessions[id]!.draining = true
            s.outbound.yield(.drain(reason: reason))
            logger.info("draining pilot", metadata: ["slurm.job_id": "\(jobID)", "reason": "\(reason)"])
        }
    }

    /// Handles a frame from an authenticated pilot. Returns why the frame is refused when the
    /// pilot sent something the service did not ask for (the session is then dropped).
    public func received(_ frame: PilotFrame, from sessionID: Int) async -> String? {
        guard sessions[sessionID] != nil else { return nil }
        sessions[sessionID]!.lastHeard = Date()
        switch frame {
        case .results(let results):
            await complete(results, from: sessionID)
        case .loaded(let key, let error, let log):
            guard sessions[sessionID]!.loading.remove(key) != nil else {
                return "loaded \(key), which the service never asked it to load"
            }
            recordLoadLog(key, error: error, log: log, sessionID: sessionID)
            if let error {
                failedLoads[key, default: [:]][sessionID] = error
                await failUnloadable(key, error: error, jobID: sessions[sessionID]!.hello.jobID)
            } else {
                sessions[sessionID]!.loaded.insert(key)
            }
        case .unload(let key):
            sessions[sessionID]!.loaded.remove(key)
        case .heartbeat(let status):
            sessions[sessionID]!.status = status
        case .credit(let slots):
            sessions[sessionID]!.slots = min(max(0, slots), max(1, sessions[sessionID]!.hello.slots))
            if slots == 0 { sessions[sessionID]!.draining = true }
        case .bye(let reason, let returned):
            let session = sessions[sessionID]!
            let back = returned.compactMap { sessions[sessionID]!.inFlight.removeValue(forKey: $0) }
            if !back.isEmpty {
                // Handed back unstarted: not a failed attempt.
                for b in back {
                    landed(b.items)
                    queues[b.key]?.items.insert(contentsOf: b.items, at: 0)
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
        guard let batch = sessions[sessionID]?.inFlight.removeValue(forKey: results.batchID) else {
            logger.debug("ignoring results for a batch this pilot does not hold", metadata: ["batch": "\(results.batchID)"])
            return
        }
        if sessions[sessionID]!.inFlight.isEmpty { sessions[sessionID]!.idleSince = Date() }
        landed(batch.items)
        if !results.log.isEmpty, let q = queues[batch.key], let owner = q.metadata.owner, batch.items.allSatisfy({ $0.owner == owner }) {
            let session = sessions[sessionID]!
            logs.append(
                q.spec.digest,
                .init(at: Date(), kind: .batch, error: nil, text: results.log, jobID: session.hello.jobID, node: session.hello.node))
        }
        let expected = Set(batch.items.map(\.id))
        var answered = results.items.filter { expected.contains($0.id) }
        let missing = expected.subtracting(answered.map(\.id))
        answered += missing.map { ItemResult(id: $0, outcome: .error("the pilot returned no result for this item")) }
        if queues[batch.key]?.metadata.deterministic == true {
            let payloads = Dictionary(uniqueKeysWithValues: batch.items.map { ($0.id, $0.payload) })
            for r in answered {
                if case .output(let bytes) = r.outcome, let input = payloads[r.id] { cache.put(ResultCache.key(batch.key, input), bytes) }
            }
        }
        await record(answered)
    }

    func record(_ results: [ItemResult]) async {
        do {
            let finished = try await store.complete(results)
            await waiters.finished(finished)
        } catch {
            logger.error("cannot record results", metadata: ["error": "\(error)"])
        }
    }

    func requeue(_ batches: [InFlight], lostJob: UInt32, node: String) async {
        let ids = batches.flatMap { $0.items.map(\.id) }
        let attempts = (try? await store.countAttempt(ids)) ?? [:]
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
            queues[b.key]?.items.insert(contentsOf: again, at: 0)
            itemsRequeued.increment(by: again.count)
        }
        if !failed.isEmpty { await record(failed) }
    }

    /// A servable no pilot can load fails its queued items with the loader's message.
    func failUnloadable(_ key: String, error: String, jobID: UInt32) async {
        let elsewhere = sessions.values.contains { $0.loaded.contains(key) || $0.loading.contains(key) }
        guard !elsewhere, var q = queues[key] else { return }
        let items = q.items
        q.items.removeAll()
        queues[key] = q
        logger.warning("servable failed to load; failing its queued items", metadata: ["servable.key": "\(key)", "error": "\(error)"])
        await record(
            items.map { ItemResult(id: $0.id, outcome: .error("the servable could not be loaded on pilot job \(jobID): \(error)")) })
        updateGauge()
    }

    // MARK: Matching work to pilots

    func pump() {
        for key in queues.keys {
            guard var q = queues[key], !q.items.isEmpty, q.waitingForEnvironment == nil else { continue }
            let candidates = sessions.values.filter { $0.hello.pool == q.pool && !$0.draining && failedLoads[key]?[$0.id] == nil }
            let ready = candidates.filter { $0.loaded.contains(key) && $0.slots > $0.busy }
            let loading = candidates.contains { $0.loading.contains(key) }
            var free = ready.reduce(0) { $0 + ($1.slots - $1.busy) }
            var order = ready.sorted { ($0.slots - $0.busy) > ($1.slots - $1.busy) }.map(\.id)
            while !q.items.isEmpty, free > 0, let sid = order.first {
                let n = min(q.metadata.batching.maxBatchSize, max(1, (q.items.count + free - 1) / free))
                let items = Array(q.items.prefix(n))
                q.items.removeFirst(items.count)
                let batchID = nextBatchID
                nextBatchID += 1
                sessions[sid]!.inFlight[batchID] = InFlight(key: key, items: items, sentAt: Date())
                sessions[sid]!.outbound.yield(
                    .batch(
                        Batch(
                            id: batchID, key: key, parameters: q.parameters, timeoutSeconds: q.metadata.timeoutSeconds,
                            items: items.map { Batch.Item(id: $0.id, payload: $0.payload) })))
                for item in items { runningTasks[item.taskID, default: 0] += 1 }
                itemsDispatched.increment(by: items.count)
                batchesDispatched.increment()
                free -= 1
                if sessions[sid]!.slots <= sessions[sid]!.busy { order.removeFirst() } else { order.append(order.removeFirst()) }
            }
            queues[key] = q
            // More work than the loaded pilots take: have one more pilot load the servable.
            if !q.items.isEmpty, !loading, let next = candidates.first(where: { !$0.loaded.contains(key) && $0.slots > $0.busy }) {
                sessions[next.id]!.loading.insert(key)
                next.outbound.yield(.load(q.spec))
            }
        }
        updateGauge()
    }

    /// An environment build ended: its queues go to pilots, or fail with the installer's message.
    public func environmentFinished(_ id: String, status: EnvironmentStore.Status) async {
        for key in queues.keys where queues[key]?.waitingForEnvironment == id {
            switch status {
            case .ready(let interpreter):
                queues[key]!.spec.environment.interpreter = interpreter
                queues[key]!.waitingForEnvironment = nil
            case .failed(let message):
                let items = queues.removeValue(forKey: key)?.items ?? []
                await fail(items, message)
            case .building:
                break
            }
        }
        updateGauge()
        pump()
    }

    /// Whether a servable version's queue is waiting for its environment.
    public func isWaitingForEnvironment(digest: String) -> Bool {
        queues.values.contains { $0.spec.digest == digest && $0.waitingForEnvironment != nil }
    }

    /// Fails accepted items at once, with one message.
    public func fail(_ items: [QueuedItem], _ message: String) async {
        guard !items.isEmpty else { return }
        await record(items.map { ItemResult(id: $0.id, outcome: .error(message)) })
    }

    /// Keeps what a worker said while loading, for the servable's owner.
    func recordLoadLog(_ key: String, error: String?, log: String, sessionID: Int) {
        guard let digest = queues[key]?.spec.digest, let session = sessions[sessionID] else { return }
        logs.append(digest, .init(at: Date(), kind: .load, error: error, text: log, jobID: session.hello.jobID, node: session.hello.node))
    }

    /// What the workers of a servable version said (see `ServableLogs`).
    public func logEntries(digest: String) -> [JSONValue] { logs.entries(for: digest).map(\.json) }

    /// Whether some of a task's items are on a pilot now.
    public func isRunning(_ taskID: String) -> Bool { (runningTasks[taskID] ?? 0) > 0 }

    /// Items of `batch` left the pilots (answered, or back to the queue).
    func landed(_ items: [QueuedItem]) {
        for item in items {
            if let n = runningTasks[item.taskID], n > 1 {
                runningTasks[item.taskID] = n - 1
            } else {
                runningTasks.removeValue(forKey: item.taskID)
            }
        }
    }

    func updateGauge() {
        queuedGauge.record(queues.values.reduce(0) { $0 + $1.items.count })
    }

    // MARK: Observation for the pilot manager and the API

    public struct PoolLoad: Sendable {
        public var queuedItems: Int
        public var sessions: [Session]
    }

    public func load(pool: String) -> PoolLoad {
        PoolLoad(
            queuedItems: queues.values.filter { $0.pool == pool }.reduce(0) { $0 + $1.items.count },
            sessions: sessions.values.filter { $0.hello.pool == pool })
    }

    public func allSessions() -> [Session] { Array(sessions.values) }

    public func displayName(_ key: String) -> String { names[key] ?? key }

    /// Pilots that stopped heartbeating (a hung node): treated as lost.
    public func reapSilentSessions(olderThan seconds: TimeInterval) async {
        let now = Date()
        for (id, s) in sessions where now.timeIntervalSince(s.lastHeard) > seconds {
            await detach(id, reason: "no heartbeat for \(Int(now.timeIntervalSince(s.lastHeard))) s")
        }
    }
}
