import DLHubCore

/// The queues of accepted items (one per servable version and parameter set) and how they
/// become batches. A plain value with no I/O, so its policy is unit-tested without sockets:
///
/// - fair: queues take turns, one batch each per round, in the order they were last served
///   (round robin, never dictionary order);
/// - a batch holds at most the servable's `max_batch_size` items and at most `maxBatchBytes` of
///   input (but always at least one item), and shares what is queued among the free slots so
///   that nothing waits for a batch to fill;
/// - a queue with nothing left is dropped, so a flood of distinct parameter sets leaves nothing
///   behind.
struct BatchPlanner {
    struct Queue {
        var spec: ServableSpec
        var metadata: ServableMetadata
        var pool: String
        var parameters: [UInt8]
        /// Pending items are `items[head...]` (taking from the front costs nothing).
        var items: [Dispatcher.QueuedItem] = []
        var head = 0
        /// The environment being built for this servable: nothing is dispatched until it is ready.
        var waitingForEnvironment: String?

        var pending: Int { items.count - head }
        var isEmpty: Bool { pending == 0 }
    }

    private(set) var queues: [String: Queue] = [:]
    /// Queue keys in the order they are served next.
    private(set) var turn: [String] = []
    let maxBatchBytes: Int

    init(maxBatchBytes: Int) {
        self.maxBatchBytes = max(1, maxBatchBytes)
    }

    /// Appends items to a queue, making it from `template` when it does not exist.
    mutating func add(_ key: String, template: @autoclosure () -> Queue, items: [Dispatcher.QueuedItem]) {
        if queues[key] == nil {
            queues[key] = template()
            turn.append(key)
        }
        queues[key]!.items += items
    }

    /// Puts items back at the front of their queue (handed back, or their pilot was lost).
    mutating func putBack(_ key: String, template: @autoclosure () -> Queue?, items: [Dispatcher.QueuedItem]) {
        guard !items.isEmpty else { return }
        if queues[key] == nil {
            guard let queue = template() else { return }
            queues[key] = queue
            turn.append(key)
        }
        let q = queues[key]!
        queues[key]!.items = items + q.items[q.head...]
        queues[key]!.head = 0
    }

    /// Keys whose items may go out now, in turn order.
    var ready: [String] { turn.filter { queues[$0].map { !$0.isEmpty && $0.waitingForEnvironment == nil } ?? false } }

    /// The next batch of `key` when `freeSlots` slots can take its work.
    mutating func take(_ key: String, freeSlots: Int) -> [Dispatcher.QueuedItem] {
        guard var q = queues[key], !q.isEmpty else { return [] }
        let share = max(1, (q.pending + max(1, freeSlots) - 1) / max(1, freeSlots))
        let limit = min(q.metadata.batching.maxBatchSize, share)
        var end = q.head
        var bytes = 0
        while end < q.items.count, end - q.head < limit {
            let size = q.items[end].payload.count
            if end > q.head, bytes + size > maxBatchBytes { break }
            bytes += size
            end += 1
        }
        let batch = Array(q.items[q.head..<end])
        q.head = end
        if q.head > 1024, q.head * 2 > q.items.count {
            q.items.removeFirst(q.head)
            q.head = 0
        }
        queues[key] = q
        // Served: to the back of the line.
        if let i = turn.firstIndex(of: key) { turn.append(turn.remove(at: i)) }
        return batch
    }

    /// Takes every pending item of a queue out (to fail them).
    mutating func drain(_ key: String) -> [Dispatcher.QueuedItem] {
        guard let q = queues[key] else { return [] }
        queues[key]!.items = []
        queues[key]!.head = 0
        return Array(q.items[q.head...])
    }

    /// Takes particular items out of a queue (expired ones).
    mutating func remove(_ key: String, items ids: Set<UInt64>) {
        guard let q = queues[key] else { return }
        let kept = q.items[q.head...].filter { !ids.contains($0.id) }
        guard kept.count != q.pending else { return }
        queues[key]!.items = Array(kept)
        queues[key]!.head = 0
    }

    /// Takes a task's pending items out of a queue (it was cancelled); returns their ids.
    mutating func remove(_ key: String, task taskID: String) -> [UInt64] {
        guard let q = queues[key] else { return [] }
        var removed: [UInt64] = []
        let kept = q.items[q.head...].filter { item in
            guard item.taskID == taskID else { return true }
            removed.append(item.id)
            return false
        }
        guard !removed.isEmpty else { return [] }
        queues[key]!.items = Array(kept)
        queues[key]!.head = 0
        return removed
    }

    /// Holds a queue until its environment (being rebuilt) is ready again.
    mutating func hold(_ key: String, for environment: String) {
        queues[key]?.waitingForEnvironment = environment
    }

    mutating func setEnvironment(_ key: String, interpreter: String) {
        queues[key]?.spec.environment.interpreter = interpreter
        queues[key]?.waitingForEnvironment = nil
    }

    /// Drops empty queues, except those still `needed` (work in flight, a load under way).
    mutating func dropEmpty(keeping needed: Set<String>) {
        let empty = queues.filter { $0.value.isEmpty && $0.value.waitingForEnvironment == nil && !needed.contains($0.key) }.map(\.key)
        for key in empty { queues.removeValue(forKey: key) }
        if !empty.isEmpty { turn.removeAll { queues[$0] == nil } }
    }

    func pending(pool: String) -> Int { queues.values.filter { $0.pool == pool }.reduce(0) { $0 + $1.pending } }

    var pending: Int { queues.values.reduce(0) { $0 + $1.pending } }
}
