import DLHubCore
import Foundation

/// Tasks that live in memory only: a run request with `?wait=S` is accepted here, not in the
/// task store, and is answered from here when it finishes within its wait. Only when the wait
/// runs out is the task written to the store (with what it has so far) and its id handed out,
/// so whatever a client is given as a task id is durable, and a request answered at once costs
/// no disk write. A live task lost in a crash was never acknowledged: its client saw the
/// connection drop, not an id.
///
/// A plain value owned by the dispatcher (results land there): no I/O, so its rules are
/// unit-tested without a service.
public struct LiveTasks: Sendable {
    public struct Entry: Sendable {
        public var id: String
        public var owner: String
        public var servable: String
        public var digest: String
        public var pool: String
        public var single: Bool
        public var parameters: [UInt8]
        public var created: Double
        public var itemIDs: [UInt64]
        public var inputs: [[UInt8]]
        public var outcomes: [ItemResult.Outcome?]
        public var remaining: Int
        public var failed = 0
        public var finished: Double?
        /// Being written to the store: results that land meanwhile are kept in `late` and
        /// recorded in the store once the task is there.
        public var persisting = false
        public var late: [ItemResult] = []
        /// Could not be written to the store: forgotten when it finishes.
        public var abandoned = false
        public var waiter: CheckedContinuation<Entry?, Never>?

        public init(
            id: String, owner: String, servable: String, digest: String, pool: String, single: Bool, parameters: [UInt8],
            itemIDs: [UInt64], inputs: [[UInt8]], created: Double = Date().timeIntervalSince1970
        ) {
            self.id = id
            self.owner = owner
            self.servable = servable
            self.digest = digest
            self.pool = pool
            self.single = single
            self.parameters = parameters
            self.created = created
            self.itemIDs = itemIDs
            self.inputs = inputs
            outcomes = Array(repeating: nil, count: itemIDs.count)
            remaining = itemIDs.count
        }

        /// The task as the store keeps it (for the moment its wait runs out).
        public var newTask: TaskStore.NewTask {
            TaskStore.NewTask(
                id: id, owner: owner, servable: servable, digest: digest, pool: pool, single: single, parameters: parameters,
                inputs: inputs, itemIDs: itemIDs, outcomes: outcomes, created: created)
        }
    }

    private(set) var tasks: [String: Entry] = [:]
    /// Which task, and which of its inputs, an item is.
    private var items: [UInt64: (task: String, index: Int)] = [:]

    public init() {}

    public var count: Int { tasks.count }

    public func task(_ id: String) -> Entry? { tasks[id] }

    public mutating func add(_ task: Entry) {
        tasks[task.id] = task
        for (i, id) in task.itemIDs.enumerated() { items[id] = (task.id, i) }
    }

    /// Records the outcomes of live items. Returns the results that belong to the store (items
    /// of durable tasks, and those of a task being written, for after it is there), and the
    /// tasks this finished whose requests are waiting (to be resumed).
    public mutating func complete(
        _ results: [ItemResult]
    ) -> (forStore: [ItemResult], finished: [(CheckedContinuation<Entry?, Never>, Entry)]) {
        var forStore: [ItemResult] = []
        var finished: [(CheckedContinuation<Entry?, Never>, Entry)] = []
        for r in results {
            // Moved out of the table while it changes, so its arrays are not copied per result.
            guard let (taskID, index) = items[r.id], var task = tasks.removeValue(forKey: taskID) else {
                forStore.append(r)
                continue
            }
            defer { if task.abandoned && task.finished != nil { remove(taskID) } }
            guard task.outcomes[index] == nil else {  // answered already: the first answer stands
                tasks[taskID] = task
                continue
            }
            task.outcomes[index] = r.outcome
            task.remaining -= 1
            if case .error = r.outcome { task.failed += 1 }
            if task.persisting { task.late.append(r) }
            if task.remaining == 0, task.finished == nil {
                task.finished = Date().timeIntervalSince1970
                if let waiter = task.waiter {
                    task.waiter = nil
                    finished.append((waiter, task))
                }
            }
            tasks[taskID] = task
        }
        return (forStore, finished)
    }

    /// Parks a waiting request on a task; false when the task is finished or unknown.
    mutating func park(_ id: String, _ waiter: CheckedContinuation<Entry?, Never>) -> Bool {
        guard var task = tasks[id], task.finished == nil, task.waiter == nil else { return false }
        task.waiter = waiter
        tasks[id] = task
        return true
    }

    /// A task whose store write failed: nobody will collect it, so it goes when it finishes.
    public mutating func abandon(_ id: String) {
        guard let task = tasks[id] else { return }
        if task.finished != nil {
            remove(id)
        } else {
            tasks[id]!.persisting = false
            tasks[id]!.abandoned = true
        }
    }

    /// Whether a request is parked on the task.
    func isParked(_ id: String) -> Bool { tasks[id]?.waiter != nil }

    /// The parked request of a task, taken (its wait ran out).
    mutating func unpark(_ id: String) -> CheckedContinuation<Entry?, Never>? {
        guard let waiter = tasks[id]?.waiter else { return nil }
        tasks[id]!.waiter = nil
        return waiter
    }

    /// Marks a task as being written to the store; returns it as it stands.
    public mutating func beginPersisting(_ id: String) -> Entry? {
        guard tasks[id] != nil else { return nil }
        tasks[id]!.persisting = true
        tasks[id]!.late = []
        return tasks[id]
    }

    /// Forgets a task (answered, or now in the store); returns it.
    @discardableResult
    public mutating func remove(_ id: String) -> Entry? {
        guard let task = tasks.removeValue(forKey: id) else { return nil }
        for item in task.itemIDs { items.removeValue(forKey: item) }
        return task
    }
}

/// When the waits of parked requests run out, in deadline order, so that one timer (for the
/// earliest) serves them all: a request costs no timer of its own to start and cancel. Entries
/// of requests answered before their wait ran out are dropped lazily (`compact`).
struct WaitDeadlines {
    /// Sorted by `at` (monotonic nanoseconds); `entries[head...]` are pending.
    private var entries: [(at: UInt64, id: String)] = []
    private var head = 0

    var count: Int { entries.count - head }
    var earliest: UInt64? { head < entries.count ? entries[head].at : nil }

    mutating func add(_ id: String, at: UInt64) {
        // Waits are mostly alike, so a new deadline mostly goes last.
        var i = entries.count
        while i > head, entries[i - 1].at > at { i -= 1 }
        entries.insert((at, id), at: i)
    }

    /// Takes the ids whose deadline is at or before `now`.
    mutating func expired(now: UInt64) -> [String] {
        var ids: [String] = []
        while head < entries.count, entries[head].at <= now {
            ids.append(entries[head].id)
            head += 1
        }
        if head > 1024, head * 2 > entries.count {
            entries.removeFirst(head)
            head = 0
        }
        return ids
    }

    /// Keeps only the entries `waiting` says are still waiting.
    mutating func compact(waiting: (String) -> Bool) {
        entries = entries[head...].filter { waiting($0.id) }
        head = 0
    }
}
