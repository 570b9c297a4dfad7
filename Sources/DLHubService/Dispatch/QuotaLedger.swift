import DLHubCore

/// What each user has waiting for an answer, counted against the per-user limits, and the
/// numbers the service gives items.
///
/// A request is reserved before anything of it is written, so that a user over quota is refused
/// with nothing to undo; its items are then tied to the reservation (`register`) and each is
/// released as it is answered (`settle`), whether it ran, failed, was cancelled or expired. A
/// plain value with no I/O, unit-tested; the dispatcher owns it.
struct QuotaLedger {
    var maxItems: Int
    var maxBytes: Int64
    /// Who each unanswered item belongs to, and its size.
    private var holders: [UInt64: (owner: String, bytes: Int)] = [:]
    private var usage: [String: (items: Int, bytes: Int64)] = [:]
    /// The next item id: items, live or stored, are numbered in one space.
    private(set) var nextItemID: UInt64 = 1

    init(maxItems: Int, maxBytes: Int64) {
        self.maxItems = maxItems
        self.maxBytes = maxBytes
    }

    /// What `owner` has waiting: unanswered items and their input bytes.
    func waiting(_ owner: String) -> (items: Int, bytes: Int64) { usage[owner] ?? (0, 0) }

    /// Items tied to a reservation and not yet answered.
    var unanswered: Int { holders.count }

    /// Counts `items` inputs of `bytes` against `owner`'s quota and numbers them; a user over
    /// quota is told what they have waiting and what the limits are.
    mutating func reserve(owner: String, items: Int, bytes: Int) throws(DLHubError) -> Range<UInt64> {
        let current = waiting(owner)
        guard current.items + items <= maxItems, current.bytes + Int64(bytes) <= maxBytes else {
            throw DLHubError(
                .quotaExceeded,
                "you have \(current.items) input(s) (\(current.bytes) bytes) waiting for answers; the limit is \(maxItems) inputs and \(maxBytes) bytes per user. Wait for some to finish, then send the rest"
            )
        }
        usage[owner] = (current.items + items, current.bytes + Int64(bytes))
        defer { nextItemID += UInt64(items) }
        return nextItemID..<nextItemID + UInt64(items)
    }

    /// Gives back a reservation whose items were never accepted.
    mutating func unreserve(owner: String, items: Int, bytes: Int) {
        release(owner, items: items, bytes: Int64(bytes))
    }

    /// Ties accepted items to their owner's reservation.
    mutating func register(_ items: [Dispatcher.QueuedItem]) {
        for item in items { holders[item.id] = (item.owner, item.payload.count) }
    }

    /// Counts again items accepted before a restart (their reservation was in the old process).
    mutating func restore(_ items: [Dispatcher.QueuedItem]) {
        for item in items where holders[item.id] == nil {
            holders[item.id] = (item.owner, item.payload.count)
            let current = waiting(item.owner)
            usage[item.owner] = (current.items + 1, current.bytes + Int64(item.payload.count))
        }
    }

    /// Items were answered: each leaves its owner's count (ids not held are ignored, so an item
    /// answered twice is released once).
    mutating func settle(_ ids: some Sequence<UInt64>) {
        for id in ids {
            if let held = holders.removeValue(forKey: id) { release(held.owner, items: 1, bytes: Int64(held.bytes)) }
        }
    }

    /// Numbers items after those a previous run of the service gave out.
    mutating func startItemIDs(after used: UInt64) {
        nextItemID = max(nextItemID, used + 1)
    }

    private mutating func release(_ owner: String, items: Int, bytes: Int64) {
        guard let current = usage[owner] else { return }
        let left = (items: max(0, current.items - items), bytes: max(0, current.bytes - bytes))
        usage[owner] = left.items == 0 ? nil : left
    }
}
