import DLHubCore

/// Which tasks have items on pilots now, and the tasks cancelled while some of their items ran.
///
/// A task's status says `running` while a pilot holds any of its items; a cancelled task's
/// items that come back unanswered (handed back, or put back after a lost pilot) are answered
/// with the cancellation instead of running again (found by the red team: a cancelled input
/// whose pilot was lost ran on the next pilots, and its task ended `failed` after three). A
/// plain value, unit-tested; the dispatcher owns it.
struct RunningTasks {
    /// Items on pilots, by task.
    private var counts: [String: Int] = [:]
    /// Cancelled tasks with items on pilots at the time, and what their items are answered with.
    private var cancellations: [String: String] = [:]
    /// Cancellations remembered at most (a bound: each is a few bytes, but tasks are unbounded).
    static let maxCancellations = 10_000

    func isRunning(_ taskID: String) -> Bool { (counts[taskID] ?? 0) > 0 }

    /// Items were sent to a pilot.
    mutating func sent(_ items: [Dispatcher.QueuedItem]) {
        for (task, n) in Self.runs(items) { counts[task, default: 0] += n }
    }

    /// Items left the pilots (answered, or back to the queue).
    mutating func landed(_ items: [Dispatcher.QueuedItem]) {
        for (task, n) in Self.runs(items) {
            if let held = counts[task], held > n { counts[task] = held - n } else { counts.removeValue(forKey: task) }
        }
    }

    /// A task was cancelled while some of its items ran.
    mutating func cancelled(_ taskID: String, message: String) {
        if cancellations.count >= Self.maxCancellations { cancellations.removeAll() }
        cancellations[taskID] = message
    }

    /// Items about to run again: those of cancelled tasks are answered with the cancellation
    /// (`answers`), the others are `kept`.
    func sortOut(_ items: [Dispatcher.QueuedItem]) -> (kept: [Dispatcher.QueuedItem], answers: [ItemResult]) {
        guard !cancellations.isEmpty else { return (items, []) }
        var kept: [Dispatcher.QueuedItem] = []
        var answers: [ItemResult] = []
        for item in items {
            if let message = cancellations[item.taskID] {
                answers.append(ItemResult(id: item.id, outcome: .error(message)))
            } else {
                kept.append(item)
            }
        }
        return (kept, answers)
    }

    /// Items counted by task, a run of neighbours at a time (a batch holds long runs of one task).
    static func runs(_ items: [Dispatcher.QueuedItem]) -> [(String, Int)] {
        var out: [(String, Int)] = []
        for item in items {
            if let last = out.last, last.0 == item.taskID { out[out.count - 1].1 += 1 } else { out.append((item.taskID, 1)) }
        }
        return out
    }
}
