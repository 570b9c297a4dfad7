import DLHubCore
import Foundation
import Logging
import Metrics

/// The dispatcher's side of the pilots: sessions coming and going, the frames they send, and
/// matching queued work to their free slots.
extension Dispatcher {
    // MARK: Sessions

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
                lastHeard: now, outbound: outbound))
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
        for b in held.values { running.landed(b.items) }
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

    /// Pilots that stopped heartbeating (a hung node): treated as lost.
    public func reapSilentSessions(olderThan seconds: TimeInterval) async {
        let now = Date()
        for (id, s) in sessions where now.timeIntervalSince(s.lastHeard) > seconds {
            await detach(id, reason: "no heartbeat for \(Int(now.timeIntervalSince(s.lastHeard))) s")
        }
    }

    /// Batches a pilot has held past their deadline (a worker that hangs in a way the pilot does
    /// not catch, a pilot that stopped answering but not heartbeating): taken back, their items
    /// retried elsewhere or failed, like those of a lost pilot.
    public func reapOverdueBatches(now: Date = Date()) async {
        for (sid, session) in sessions {
            let overdue = session.inFlight.filter { $0.value.deadline < now }
            guard !overdue.isEmpty else { continue }
            sessions.update(sid) { for id in overdue.keys { $0.inFlight.removeValue(forKey: id) } }
            for b in overdue.values { running.landed(b.items) }
            metrics.batchesTakenBack.increment(by: overdue.count)
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

    // MARK: Frames from pilots

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
            let back = await takeBack(ids, from: sessionID)
            metrics.itemsReturned.increment(by: back.items)
        case .heartbeat(let status):
            sessions.update(sessionID) { $0.status = status }
        case .credit(let slots):
            sessions.update(sessionID) {
                $0.slots = min(max(0, slots), max(1, $0.hello.slots))
                if slots == 0 { $0.draining = true }
            }
        case .bye(let reason, let returned):
            let session = sessions[sessionID]!
            // Handed back unstarted: not a failed attempt.
            let back = await takeBack(returned, from: sessionID)
            metrics.itemsRequeued.increment(by: back.items)
            logger.info(
                "pilot said bye",
                metadata: ["slurm.job_id": "\(session.hello.jobID)", "reason": "\(reason)", "returned.batches": "\(back.batches)"])
            await detach(sessionID, reason: "bye: \(reason)")
        case .hello, .welcome, .authenticate, .load, .batch, .drain:
            return "a \(frame.name) frame, which only the service sends or which belongs to the handshake"
        }
        pump()
        return nil
    }

    /// Batches a pilot handed back unstarted go back to their queues; returns how many.
    func takeBack(_ batchIDs: [UInt64], from sessionID: Int) async -> (batches: Int, items: Int) {
        let back = batchIDs.compactMap { id in sessions.update(sessionID) { $0.inFlight.removeValue(forKey: id) } ?? nil }
        var items = 0
        for b in back {
            running.landed(b.items)
            planner.putBack(b.key, template: nil, items: await withoutCancelled(b.items))
            items += b.items.count
        }
        return (back.count, items)
    }

    /// A pilot's results for a batch it holds: cached, measured, and recorded.
    func complete(_ results: BatchResults, from sessionID: Int) async {
        guard let batch = sessions.update(sessionID, { $0.inFlight.removeValue(forKey: results.batchID) }) ?? nil else {
            logger.debug("ignoring results for a batch this pilot does not hold", metadata: ["batch": "\(results.batchID)"])
            return
        }
        sessions.update(sessionID) { if $0.inFlight.isEmpty { $0.idleSince = Date() } }
        running.landed(batch.items)
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
        let latency = metrics.servable(batch.servable).latency
        let now = DispatchTime.now().uptimeNanoseconds
        for item in batch.items { latency.recordNanoseconds(Int64(now &- item.queuedAt)) }
        served.record(digest: batch.digest, latencies: batch.items.map { Double(now &- $0.queuedAt) / 1e9 })
        await record(answered)
    }

    /// Keeps what a worker said while loading, for the servable's owner.
    func recordLoadLog(_ key: String, error: String?, log: String, sessionID: Int) {
        guard let session = sessions[sessionID] else { return }
        logs.append(
            digest(ofWorker: key),
            .init(at: Date(), kind: .load, error: error, text: log, jobID: session.hello.jobID, node: session.hello.node))
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
        var failBlocked = false
        for queueKey in planner.ready {
            guard let q = planner.queues[queueKey] else { continue }
            let key = q.spec.key
            let candidates = sessions.values.filter { $0.hello.pool == q.pool && !$0.draining }
            if candidates.contains(where: { $0.loading.contains(key) }) { continue }
            if !loadFailures.mayLoad(key, now: now) {
                if !isLoadedOrLoading(key), loadFailures.markBlocked(key) { failBlocked = true }
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
        if failBlocked { Task { await self.failBlocked() } }
        let needed = Set(sessions.values.flatMap { $0.inFlight.values.map(\.key) + Array($0.loading) })
        planner.dropEmpty(keeping: needed)
        directory.prune(keeping: Set(planner.queues.keys).union(sessions.loadedKeys).union(needed))
        updateGauge()
    }

    func send(_ items: [QueuedItem], of key: String, queue q: BatchPlanner.Queue, to sid: Int) {
        let batchID = nextBatchID
        nextBatchID += 1
        let now = Date()
        let label = DispatchMetrics.servableLabel(q.metadata, digest: q.spec.digest)
        // The pilot may run each item alone after a failure, each with the servable's timeout.
        let deadline = now.addingTimeInterval(q.metadata.timeoutSeconds * Double(items.count + 1) + limits.batchMarginSeconds)
        let flight = InFlight(
            key: key, workerKey: q.spec.key, items: items, sentAt: now, deadline: deadline, digest: q.spec.digest,
            deterministic: q.metadata.deterministic, servableOwner: q.metadata.owner, servable: label)
        sessions.update(sid) { $0.inFlight[batchID] = flight }
        sessions[sid]!.outbound.yield(
            .batch(
                Batch(
                    id: batchID, key: q.spec.key, parameters: q.parameters, timeoutSeconds: q.metadata.timeoutSeconds,
                    items: items.map { Batch.Item(id: $0.id, payload: $0.payload) })))
        running.sent(items)
        metrics.itemsDispatched.increment(by: items.count)
        metrics.batchesDispatched.increment()
        metrics.batchSizes.record(items.count)
        let wait = metrics.servable(label).queueWait
        let sent = DispatchTime.now().uptimeNanoseconds
        for item in items { wait.recordNanoseconds(Int64(sent &- item.queuedAt)) }
    }

    /// Whether some pilot has a worker key loaded or is loading it.
    func isLoadedOrLoading(_ key: String) -> Bool {
        sessions.values.contains { $0.loaded.contains(key) || $0.loading.contains(key) }
    }
}
