import DLHubCore

/// The queues of accepted items (one per servable version and parameter set) and how they
/// become batches. A plain value with no I/O, so its policy is unit-tested without sockets:
///
/// - fair between users: users take turns for the pilots' slots, whatever the number of queues
///   or items each has (the user served last goes to the back of the line); within a queue, the
///   users with items in it take turns for the places in each batch, so 10,000 inputs sent first
///   by one user do not stand in front of another user's one;
/// - fair between queues: a user's queues take turns, one batch each per round, in the order
///   they were last served (round robin, never dictionary order);
/// - a batch holds at most the servable's `max_batch_size` items and at most `maxBatchBytes` of
///   input (but always at least one item), and shares what is queued among the free slots so
///   that nothing waits for a batch to fill;
/// - a queue with nothing left is dropped, so a flood of distinct parameter sets leaves nothing
///   behind.
struct BatchPlanner {
    /// One user's pending items in a queue, oldest first: `items[head...]`.
    struct Lane {
        var items: [Dispatcher.QueuedItem] = []
        var head = 0
        var pending: Int { items.count - head }

        mutating func take(_ limit: Int, bytes budget: inout Int, first: Bool) -> ArraySlice<Dispatcher.QueuedItem> {
            var end = head
            while end < items.count, end - head < limit {
                let size = items[end].payload.count
                if !(first && end == head), size > budget { break }
                budget -= size
                end += 1
            }
            let taken = items[head..<end]
            head = end
            if head > 1024, head * 2 > items.count {
                items.removeFirst(head)
                head = 0
            }
            return taken
        }
    }

    struct Queue {
        var spec: ServableSpec
        var metadata: ServableMetadata
        var pool: String
        var parameters: [UInt8]
        /// Pending items by owner; `owners` is the order they take places in the next batch.
        var lanes: [String: Lane] = [:]
        var owners: [String] = []
        private(set) var pending = 0
        /// The environment being built for this servable: nothing is dispatched until it is ready.
        var waitingForEnvironment: String?

        init(spec: ServableSpec, metadata: ServableMetadata, pool: String, parameters: [UInt8], waitingForEnvironment: String? = nil) {
            self.spec = spec
            self.metadata = metadata
            self.pool = pool
            self.parameters = parameters
            self.waitingForEnvironment = waitingForEnvironment
        }

        var isEmpty: Bool { pending == 0 }

        mutating func append(_ items: [Dispatcher.QueuedItem], atFront: Bool) {
            for item in items where lanes[item.owner] == nil {
                lanes[item.owner] = Lane()
                owners.append(item.owner)
            }
            if atFront {
                var byOwner: [String: [Dispatcher.QueuedItem]] = [:]
                for item in items { byOwner[item.owner, default: []].append(item) }
                for (owner, back) in byOwner {
                    let lane = lanes[owner]!
                    lanes[owner] = Lane(items: back + lane.items[lane.head...], head: 0)
                }
            } else if let owner = items.first?.owner, items.allSatisfy({ $0.owner == owner }) {
                lanes[owner]!.items += items
            } else {
                for item in items { lanes[item.owner]!.items.append(item) }
            }
            pending += items.count
        }

        /// Keeps the pending items that pass `keep`; returns those that did not.
        mutating func filter(_ keep: (Dispatcher.QueuedItem) -> Bool) -> [Dispatcher.QueuedItem] {
            var removed: [Dispatcher.QueuedItem] = []
            for owner in owners {
                let lane = lanes[owner]!
                let kept = lane.items[lane.head...].filter { item in
                    if keep(item) { return true }
                    removed.append(item)
                    return false
                }
                if kept.count != lane.pending { lanes[owner] = Lane(items: Array(kept), head: 0) }
            }
            pending -= removed.count
            dropEmptyLanes()
            return removed
        }

        /// The next batch: the owners with items here take turns, a share of the places each
        /// (the one served first this time goes last next time).
        mutating func take(limit: Int, maxBytes: Int) -> [Dispatcher.QueuedItem] {
            var budget = maxBytes
            if owners.count == 1 {
                let batch = Array(lanes[owners[0]]!.take(limit, bytes: &budget, first: true))
                pending -= batch.count
                dropEmptyLanes()
                return batch
            }
            var batch: [Dispatcher.QueuedItem] = []
            var served: [String] = []
            // Rounds of an equal share each, until the batch is full or nothing more fits.
            while batch.count < limit {
                let share = max(1, (limit - batch.count) / owners.count)
                var progressed = false
                for owner in owners where batch.count < limit {
                    let taken = lanes[owner]!.take(min(share, limit - batch.count), bytes: &budget, first: batch.isEmpty)
                    guard !taken.isEmpty else { continue }
                    batch += taken
                    progressed = true
                    if !served.contains(owner) { served.append(owner) }
                }
                if !progressed { break }
            }
            pending -= batch.count
            // Served: to the back of the line within the queue.
            if let first = served.first, let i = owners.firstIndex(of: first) { owners.append(owners.remove(at: i)) }
            dropEmptyLanes()
            return batch
        }

        private mutating func dropEmptyLanes() {
            guard owners.contains(where: { lanes[$0]!.pending == 0 }) else { return }
            for owner in owners where lanes[owner]!.pending == 0 { lanes.removeValue(forKey: owner) }
            owners.removeAll { lanes[$0] == nil }
        }
    }

    private(set) var queues: [String: Queue] = [:]
    /// Queue keys in the order they are served next.
    private(set) var turn: [String] = []
    /// Users in the order they are served next, and how many items each has pending.
    private(set) var users: [String] = []
    private(set) var pendingByUser: [String: Int] = [:]
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
        queues[key]!.append(items, atFront: false)
        count(items, by: 1)
    }

    /// Puts items back at the front of their queue (handed back, or their pilot was lost).
    mutating func putBack(_ key: String, template: @autoclosure () -> Queue?, items: [Dispatcher.QueuedItem]) {
        guard !items.isEmpty else { return }
        if queues[key] == nil {
            guard let queue = template() else { return }
            queues[key] = queue
            turn.append(key)
        }
        queues[key]!.append(items, atFront: true)
        count(items, by: 1)
    }

    /// Keys whose items may go out now: users take turns (each user's first ready queue, then
    /// each user's second, ...), and a user's queues come in turn order.
    var ready: [String] {
        let keys = turn.filter { queues[$0].map { !$0.isEmpty && $0.waitingForEnvironment == nil } ?? false }
        let waiting = users.filter { (pendingByUser[$0] ?? 0) > 0 }
        guard waiting.count > 1, keys.count > 1 else { return keys }
        var byUser: [String: [String]] = [:]
        for key in keys { for owner in queues[key]!.owners { byUser[owner, default: []].append(key) } }
        var out: [String] = []
        var seen: Set<String> = []
        var round = 0
        var more = true
        while more {
            more = false
            for user in waiting {
                guard let mine = byUser[user], round < mine.count else { continue }
                more = true
                if seen.insert(mine[round]).inserted { out.append(mine[round]) }
            }
            round += 1
        }
        return out
    }

    /// The next batch of `key` when `freeSlots` slots can take its work.
    mutating func take(_ key: String, freeSlots: Int) -> [Dispatcher.QueuedItem] {
        guard var q = queues[key], !q.isEmpty else { return [] }
        let share = max(1, (q.pending + max(1, freeSlots) - 1) / max(1, freeSlots))
        let batch = q.take(limit: min(q.metadata.batching.maxBatchSize, share), maxBytes: maxBatchBytes)
        queues[key] = q
        count(batch, by: -1)
        // Served: to the back of the line, the queue and the users whose items went.
        if let i = turn.firstIndex(of: key) { turn.append(turn.remove(at: i)) }
        var servedUsers: [String] = []
        for item in batch where servedUsers.last != item.owner && !servedUsers.contains(item.owner) { servedUsers.append(item.owner) }
        if !servedUsers.isEmpty {
            let served = Set(servedUsers)
            users = users.filter { !served.contains($0) } + servedUsers
        }
        return batch
    }

    /// Takes every pending item of a queue out (to fail them).
    mutating func drain(_ key: String) -> [Dispatcher.QueuedItem] {
        guard var q = queues[key] else { return [] }
        let items = q.filter { _ in false }
        queues[key] = q
        count(items, by: -1)
        return items
    }

    /// Takes particular items out of a queue (expired ones).
    mutating func remove(_ key: String, items ids: Set<UInt64>) {
        guard var q = queues[key] else { return }
        let removed = q.filter { !ids.contains($0.id) }
        guard !removed.isEmpty else { return }
        queues[key] = q
        count(removed, by: -1)
    }

    /// Takes a task's pending items out of a queue (it was cancelled); returns their ids.
    mutating func remove(_ key: String, task taskID: String) -> [UInt64] {
        guard var q = queues[key] else { return [] }
        let removed = q.filter { $0.taskID != taskID }
        guard !removed.isEmpty else { return [] }
        queues[key] = q
        count(removed, by: -1)
        return removed.map(\.id)
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
        if users.count > 2 * pendingByUser.count + 64 { users.removeAll { pendingByUser[$0] == nil } }
    }

    func pending(pool: String) -> Int { queues.values.filter { $0.pool == pool }.reduce(0) { $0 + $1.pending } }

    var pending: Int { queues.values.reduce(0) { $0 + $1.pending } }

    /// Keeps the per-user counts (and the user rotation) as items come and go.
    private mutating func count(_ items: [Dispatcher.QueuedItem], by sign: Int) {
        guard !items.isEmpty else { return }
        if let owner = items.first?.owner, items.allSatisfy({ $0.owner == owner }) {
            adjust(owner, sign * items.count)
        } else {
            var byOwner: [String: Int] = [:]
            for item in items { byOwner[item.owner, default: 0] += 1 }
            for (owner, n) in byOwner { adjust(owner, sign * n) }
        }
    }

    /// A user with nothing pending who sends work again joins the line at the back, like a new
    /// one: keeping the place they had when they last left let them pass users who had waited
    /// all along (found by the generated-traffic property test).
    private mutating func adjust(_ owner: String, _ delta: Int) {
        let now = (pendingByUser[owner] ?? 0) + delta
        if pendingByUser[owner] == nil, now > 0 {
            if let i = users.firstIndex(of: owner) { users.remove(at: i) }
            users.append(owner)
        }
        pendingByUser[owner] = now > 0 ? now : nil
    }
}
