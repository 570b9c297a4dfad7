/// Requests whose callers wait in memory for their answer (`LiveTasks`), and when each wait runs
/// out (`WaitDeadlines`): one timer, for the earliest, serves them all. Once the service is
/// stopping nobody parks, so that a stop does not wait out the longest `?wait=` in flight (found
/// by the soak: an hour's wait held the stop an hour). A plain value, unit-tested; the
/// dispatcher owns it and its timer.
struct LiveRequests {
    var tasks = LiveTasks()
    private var deadlines = WaitDeadlines()
    private(set) var stopping = false

    typealias Waiter = CheckedContinuation<LiveTasks.Entry?, Never>

    /// Parks the caller of task `id` until it is answered or `deadline` (monotonic nanoseconds)
    /// passes; false when it cannot wait (finished, already waited for, unknown, or stopping).
    mutating func park(_ id: String, _ waiter: Waiter, until deadline: UInt64) -> Bool {
        guard !stopping, tasks.park(id, waiter) else { return false }
        deadlines.add(id, at: deadline)
        // Deadlines of requests answered in time are dropped lazily, here.
        if deadlines.count > 2 * tasks.count + 1024 { deadlines.compact { tasks.isParked($0) } }
        return true
    }

    /// When the next wait runs out.
    var earliestDeadline: UInt64? { deadlines.earliest }

    /// The callers whose wait ran out by `now`, no longer parked.
    mutating func expired(now: UInt64) -> [Waiter] {
        deadlines.expired(now: now).compactMap { tasks.unpark($0) }
    }

    /// A graceful stop: every parked caller, no longer parked; none parks from now on.
    mutating func stop() -> [Waiter] {
        stopping = true
        return expired(now: .max)
    }
}
