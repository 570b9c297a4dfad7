import DLHubCore

/// How many pilots were lost while holding each item: an item whose pilots keep vanishing (it
/// may crash its node or its pilot) is failed after `maxAttempts` instead of taking pilot after
/// pilot down. Counted here for every item and in the store for stored ones, so that a restart
/// keeps the count; the larger of the two decides. A plain value, unit-tested.
struct LostAttempts {
    let maxAttempts: Int
    private var counts: [UInt64: Int] = [:]

    init(maxAttempts: Int = 3) { self.maxAttempts = maxAttempts }

    var isEmpty: Bool { counts.isEmpty }

    /// Counts one more lost pilot for each of `ids` (`stored`: the store's counts, which already
    /// include this one); returns the ids that have now run out of attempts.
    mutating func lost(_ ids: [UInt64], stored: [UInt64: Int]) -> Set<UInt64> {
        var spent = Set<UInt64>()
        for id in ids {
            counts[id, default: 0] += 1
            if max(counts[id]!, stored[id] ?? 0) >= maxAttempts { spent.insert(id) }
        }
        return spent
    }

    /// Items were answered: their counts are no longer needed.
    mutating func answered(_ results: [ItemResult]) {
        guard !counts.isEmpty else { return }
        for r in results { counts.removeValue(forKey: r.id) }
    }

    /// What an item that ran out of attempts is answered with.
    func message(lostJob: UInt32, node: String) -> String {
        "the item was running on \(maxAttempts) pilot jobs that were lost (last: job \(lostJob) on \(node)); it may crash the node or the pilot"
    }
}
