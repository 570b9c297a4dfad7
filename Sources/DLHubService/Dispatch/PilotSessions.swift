import DLHubCore
import Foundation

extension Dispatcher {
    /// A pilot attached to the dispatcher: one per authenticated connection.
    public struct Session: Sendable {
        public var id: Int
        public var hello: PilotHello
        public var connectedAt: Date
        public var slots: Int
        public var loaded: Set<String> = []
        public var loading: Set<String> = []
        public var draining = false
        public var idleSince: Date
        public var lastHeard: Date
        public var status: JSONValue = [:]
        var inFlight: [UInt64: InFlight] = [:]
        let outbound: PilotOutbound

        /// Slots taken: batches on the pilot and loads under way (a load starts a worker, which
        /// takes a core and a place under the pilot's worker limit as a batch does).
        public var busy: Int { inFlight.count + loading.count }
        public var runningBatches: Int { inFlight.count }
    }
}

/// The pilots attached to the dispatcher (one session per pilot connection), with an index of
/// which hold which servable loaded: matching queued work to pilots looks only at the pilots that
/// have the servable, not at every pilot for every queue (what made `pump` cost grow with
/// servables times pilots; see docs/scaling.md). A plain value with no I/O, unit-tested.
///
/// A session's `loaded` set changes only through `load` and `unload`, which keep the index.
struct PilotSessions: Sequence {
    private var table: [Int: Dispatcher.Session] = [:]
    /// Session ids by the queue keys they have loaded.
    private var holders: [String: Set<Int>] = [:]

    subscript(id: Int) -> Dispatcher.Session? { table[id] }

    var values: Dictionary<Int, Dispatcher.Session>.Values { table.values }
    var count: Int { table.count }

    func makeIterator() -> Dictionary<Int, Dispatcher.Session>.Iterator { table.makeIterator() }

    mutating func insert(_ session: Dispatcher.Session) {
        if table[session.id] != nil { _ = remove(session.id) }
        table[session.id] = session
        for key in session.loaded { holders[key, default: []].insert(session.id) }
    }

    mutating func remove(_ id: Int) -> Dispatcher.Session? {
        guard let session = table.removeValue(forKey: id) else { return nil }
        for key in session.loaded { drop(id, from: key) }
        return session
    }

    /// Changes a session's other fields; nil when there is no such session.
    @discardableResult
    mutating func update<R>(_ id: Int, _ change: (inout Dispatcher.Session) -> R) -> R? {
        guard var session = table.removeValue(forKey: id) else { return nil }
        let loaded = session.loaded.count
        defer {
            assert(session.loaded.count == loaded, "a session's loaded set changes through load and unload only")
            table[id] = session
        }
        return change(&session)
    }

    mutating func load(_ key: String, on id: Int) {
        guard table[id] != nil else { return }
        table[id]!.loaded.insert(key)
        holders[key, default: []].insert(id)
    }

    mutating func unload(_ key: String, on id: Int) {
        guard table[id] != nil else { return }
        table[id]!.loaded.remove(key)
        drop(id, from: key)
    }

    /// The sessions that have `key` loaded.
    func holding(_ key: String) -> [Dispatcher.Session] {
        guard let ids = holders[key] else { return [] }
        return ids.compactMap { table[$0] }
    }

    /// Queue keys loaded on some pilot.
    var loadedKeys: Dictionary<String, Set<Int>>.Keys { holders.keys }

    private mutating func drop(_ id: Int, from key: String) {
        holders[key]?.remove(id)
        if holders[key]?.isEmpty == true { holders.removeValue(forKey: key) }
    }
}
