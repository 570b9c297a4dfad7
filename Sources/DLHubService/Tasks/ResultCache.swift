import DLHubCore
import Foundation

/// Memoized outputs of deterministic servables (`servable.deterministic: true`), keyed by the
/// queue key (digest and parameters) and the input's canonical JSON. Bounded; the oldest half is
/// dropped when full. A request opts out with `"cache": false`.
final class ResultCache: @unchecked Sendable {
    private var entries: [String: (output: [UInt8], stamp: UInt64)] = [:]
    private var clock: UInt64 = 0
    private let capacity: Int
    private let lock = NSLock()

    init(capacity: Int = 100_000) {
        self.capacity = capacity
    }

    static func key(_ queueKey: String, _ input: [UInt8]) -> String {
        queueKey + "|" + ContentDigest.sha256Hex(input)
    }

    func get(_ key: String) -> [UInt8]? {
        lock.lock()
        defer { lock.unlock() }
        clock += 1
        guard var e = entries[key] else { return nil }
        e.stamp = clock
        entries[key] = e
        return e.output
    }

    func put(_ key: String, _ output: [UInt8]) {
        lock.lock()
        defer { lock.unlock() }
        clock += 1
        if entries.count >= capacity {
            let keep = entries.sorted { $0.value.stamp > $1.value.stamp }.prefix(capacity / 2)
            entries = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
        }
        entries[key] = (output, clock)
    }
}
