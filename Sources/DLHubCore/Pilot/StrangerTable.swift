/// Connections to the pilot port that have not proven themselves yet, bounded in number with
/// the oldest silent one dropped first.
///
/// Anyone who can reach the port can open connections; a real pilot sends its hello within
/// milliseconds. So when the table is full, a newcomer takes the place of the stranger that has
/// waited longest without saying hello: a flood of idle connections only ever pushes out other
/// idle connections, and a pilot that connects in the middle of it gets in. Strangers that did
/// send a hello (their munge credential is being checked) are not pushed out, and are bounded
/// on their own. Pure: the listener does the closing.
public struct StrangerTable<ID: Hashable>: Sendable where ID: Sendable {
    public let silentLimit: Int
    public let provingLimit: Int
    /// Each silent stranger's arrival number, and the arrival order (entries of those that left
    /// are skipped).
    private var silent: [ID: UInt64] = [:]
    private var order: [(sequence: UInt64, id: ID)] = []
    private var orderStart = 0
    private var proving: Set<ID> = []
    private var next: UInt64 = 0

    public init(silentLimit: Int, provingLimit: Int) {
        self.silentLimit = max(1, silentLimit)
        self.provingLimit = max(1, provingLimit)
    }

    public var silentCount: Int { silent.count }
    public var provingCount: Int { proving.count }

    /// A new connection: always admitted; returns the strangers it pushes out (to be closed).
    public mutating func arrive(_ id: ID) -> [ID] {
        var evicted: [ID] = []
        while silent.count >= silentLimit, let oldest = popOldest() { evicted.append(oldest) }
        next += 1
        silent[id] = next
        order.append((next, id))
        return evicted
    }

    /// A stranger sent its hello. False when too many are being checked already (refuse it).
    public mutating func heardHello(_ id: ID) -> Bool {
        guard silent.removeValue(forKey: id) != nil else { return false }
        guard proving.count < provingLimit else { return false }
        proving.insert(id)
        compact()
        return true
    }

    /// The connection proved itself or went away: it is no stranger any more.
    public mutating func leave(_ id: ID) {
        silent.removeValue(forKey: id)
        proving.remove(id)
        compact()
    }

    /// Whether `id` is still in the table (a pushed-out one is not).
    public func contains(_ id: ID) -> Bool { silent[id] != nil || proving.contains(id) }

    private mutating func popOldest() -> ID? {
        while orderStart < order.count {
            let (sequence, id) = order[orderStart]
            orderStart += 1
            if silent[id] == sequence {
                silent.removeValue(forKey: id)
                compact()
                return id
            }
        }
        return nil
    }

    /// The arrival list keeps entries of strangers that left; it is trimmed once they dominate.
    private mutating func compact() {
        if orderStart > 64, orderStart * 2 > order.count {
            order.removeFirst(orderStart)
            orderStart = 0
        }
        if order.count - orderStart > 4 * silent.count + 64 {
            order = order[orderStart...].filter { silent[$0.id] == $0.sequence }
            orderStart = 0
        }
    }
}
