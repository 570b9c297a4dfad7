import DLHubCore
import Foundation
import Logging
import Metrics

/// How accepted items end: answered (from a pilot, the cache, or with an error), put back after
/// a lost pilot, cancelled, or expired. Every path ends in `record`, which releases the quota,
/// answers waiting callers from memory, and commits stored tasks.
extension Dispatcher {
    /// Records answers: each item leaves its owner's quota; a live task's waiting caller is
    /// answered; results of stored tasks go to the store, a group per write.
    func record(_ results: [ItemResult]) async {
        quota.settle(results.lazy.map(\.id))
        let (forStore, finished) = live.tasks.complete(results)
        for (waiter, entry) in finished { waiter.resume(returning: entry) }
        attempts.answered(results)
        guard !forStore.isEmpty, commits.add(forStore) else { return }
        while let group = commits.next() {
            do {
                let finished = try await store.complete(group)
                await waiters.finished(finished)
            } catch {
                logger.error("cannot record results", metadata: ["error": "\(error)", "items": "\(group.count)"])
            }
        }
    }

    /// Fails accepted items at once, with one message.
    public func fail(_ items: [QueuedItem], _ message: String) async {
        guard !items.isEmpty else { return }
        await record(items.map { ItemResult(id: $0.id, outcome: .error(message)) })
    }

    /// Batches whose pilot was lost (or that it held past their deadline) go back to their
    /// queues; an item that has now lost `maxAttempts` pilots is failed instead.
    func requeue(_ batches: [InFlight], lostJob: UInt32, node: String) async {
        let ids = batches.flatMap { $0.items.map(\.id) }
        // Counted in memory for every item, and in the store for those kept there (a restart keeps the count).
        let stored = (try? await store.countAttempt(ids)) ?? [:]
        let spent = attempts.lost(ids, stored: stored)
        var failed: [ItemResult] = []
        for b in batches {
            var again: [QueuedItem] = []
            for item in b.items {
                if spent.contains(item.id) {
                    failed.append(ItemResult(id: item.id, outcome: .error(attempts.message(lostJob: lostJob, node: node))))
                } else {
                    again.append(item)
                }
            }
            let kept = await withoutCancelled(again)
            planner.putBack(b.key, template: nil, items: kept)
            metrics.itemsRequeued.increment(by: kept.count)
        }
        if !failed.isEmpty { await record(failed) }
    }

    /// Answers the items of tasks cancelled while they ran with the cancellation; returns the others.
    func withoutCancelled(_ items: [QueuedItem]) async -> [QueuedItem] {
        let (kept, answers) = running.sortOut(items)
        if !answers.isEmpty { await record(answers) }
        return kept
    }

    /// Cancels a stored task: its items that are not on a pilot now (queued here, or still only
    /// in the store) are failed with `message` and never run; items already running finish and
    /// are answered as usual. Returns how many items were cancelled and how many were running.
    public func cancel(_ taskID: String, message: String) async throws(DLHubError) -> (cancelled: Int, running: Int) {
        for key in planner.queues.keys { _ = planner.remove(key, task: taskID) }
        var onPilots = Set<UInt64>()
        for session in sessions.values {
            for batch in session.inFlight.values { for item in batch.items where item.taskID == taskID { onPilots.insert(item.id) } }
        }
        try await store.markCancelled(taskID)
        if !onPilots.isEmpty { running.cancelled(taskID, message: message) }
        let cancelled = try await store.unanswered(task: taskID).filter { !onPilots.contains($0) }
        quota.settle(cancelled)
        let finished = try await store.complete(cancelled.map { ItemResult(id: $0, outcome: .error(message)) })
        await waiters.finished(finished)
        updateGauge()
        pump()
        return (cancelled.count, onPilots.count)
    }

    /// Fails items that waited past the retention: out of their queues, and answered.
    public func expire(_ results: [ItemResult]) async {
        let ids = Set(results.map(\.id))
        for key in planner.queues.keys { planner.remove(key, items: ids) }
        await record(results)
        pump()
    }

    // MARK: Servables that cannot run

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

    /// Fails the items of queues whose servable may not be loaded yet (items put back from a
    /// lost pilot, or restored after a restart): nothing waits for a load that is not coming.
    func failBlocked() async {
        let now = Date()
        for key in loadFailures.takeBlocked() {
            guard let failure = loadFailures.blocking(key, now: now), !isLoadedOrLoading(key) else { continue }
            await fail(queueKeys(ofWorker: key).flatMap { planner.drain($0) }, LoadFailures.message(failure, now: now))
        }
        updateGauge()
        pump()
    }

    /// An environment build ended: its queues go to pilots, or fail with the installer's message.
    public func environmentFinished(_ id: String, status: EnvironmentStore.Status) async {
        for (key, queue) in planner.queues where queue.waitingForEnvironment == id {
            switch status {
            case .ready(let interpreter):
                loadFailures.forget([queue.spec.key])
                planner.setEnvironment(key, interpreter: interpreter)
                directory.setInterpreter(interpreter, for: queue.spec.key)
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
        for key in directory.keys(inEnvironment: id) {
            // A new build is a new chance to load.
            loadFailures.forget([key])
            for queue in queueKeys(ofWorker: key) { planner.hold(queue, for: id) }
            for session in sessions.holding(key) {
                sessions.unload(key, on: session.id)
                session.outbound.yield(.unload(key: key))
            }
        }
    }

    /// The queues (one per parameter set) whose items run on a worker key's workers.
    func queueKeys(ofWorker key: String) -> [String] {
        planner.queues.filter { $0.value.spec.key == key }.map(\.key)
    }

    /// The servable version a worker key runs.
    func digest(ofWorker key: String) -> String {
        planner.queues.values.first { $0.spec.key == key }?.spec.digest ?? key
    }
}
