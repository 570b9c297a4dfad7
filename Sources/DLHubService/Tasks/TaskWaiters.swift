import Foundation

/// Lets a run request wait (up to `?wait=S`) for its task to finish.
public actor TaskWaiters {
    private var waiting: [String: [UUID: CheckedContinuation<Void, Never>]] = [:]
    private var recentlyFinished: [String: Date] = [:]
    /// The service is stopping: nobody waits any more (see `stopWaiting`).
    private var stopping = false

    public init() {}

    /// Returns true when the task finished within `seconds`.
    public func wait(for id: String, seconds: Double) async -> Bool {
        if recentlyFinished.removeValue(forKey: id) != nil { return true }
        guard seconds > 0, !stopping else { return false }
        let token = UUID()
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await self.suspend(id, token)
                } onCancel: {
                    Task { await self.cancel(id, token) }
                }
                return !Task.isCancelled
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(seconds))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            self.cancel(id, token)
            return (first && !stopping) || recentlyFinished.removeValue(forKey: id) != nil
        }
    }

    private func suspend(_ id: String, _ token: UUID) async {
        if recentlyFinished[id] != nil || stopping { return }
        await withCheckedContinuation { continuation in
            waiting[id, default: [:]][token] = continuation
        }
    }

    private func cancel(_ id: String, _ token: UUID) {
        if let c = waiting[id]?.removeValue(forKey: token) { c.resume() }
        if waiting[id]?.isEmpty == true { waiting.removeValue(forKey: id) }
    }

    /// A graceful stop: every waiting request is answered now with what its task has (a stop
    /// must not wait out the longest `?wait=`: found by the soak), and none waits from now on.
    public func stopWaiting() {
        stopping = true
        for continuations in waiting.values { continuations.values.forEach { $0.resume() } }
        waiting.removeAll()
    }

    public func finished(_ ids: [String]) {
        let now = Date()
        for id in ids {
            recentlyFinished[id] = now
            waiting.removeValue(forKey: id)?.values.forEach { $0.resume() }
        }
        // Forget marks nobody collected.
        if recentlyFinished.count > 10_000 {
            recentlyFinished = recentlyFinished.filter { now.timeIntervalSince($0.value) < 60 }
        }
    }
}
