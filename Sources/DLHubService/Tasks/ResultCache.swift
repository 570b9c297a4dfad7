import DLHubCore
import Foundation

/// Memoized outputs of deterministic servables (`servable.deterministic: true`), keyed by the
/// queue key (digest and parameters), the caller and the input's canonical JSON: per caller, so
/// a hit reveals nothing about what others sent. Bounded in entries and in bytes; the least
/// recently used half is dropped when either fills. A request opts out with `"cache": false`.
final class ResultCache: @unchecked Sendable {
    private var entries: [String: (output: [UInt8], stamp: UInt64)] = [:]
    private var bytes = 0
    private var clock: UInt64 = 0
    private let capacity: Int
    private let maxBytes: Int
    private let lock = NSLock()

    init(capacity: Int = 100_000, maxBytes: Int = 256 * 1024 * 1024) {
        self.capacity = max(1, capacity)
        self.maxBytes = max(1, maxBytes)
    }

    static func key(_ queueKey: String, _ caller: String, _ input: [UInt8]) -> String {
        queueKey + "|" + caller + "|" + ContentDigest.sha256Hex(input)
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
        // An output larger than a tenth of the cache is not worth keeping.
        guard output.count <= maxBytes / 10 else { return }
        clock += 1
        if entries.count >= capacity || bytes + output.count > maxBytes {
            let keep = entries.sorted { $0.value.stamp > $1.value.stamp }.prefix(entries.count / 2)
            entries = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
            bytes = entries.values.reduce(0) { $0 + $1.output.count }
        }
        if let old = entries[key] { bytes -= old.output.count }
        entries[key] = (output, clock)
        bytes += output.count
    }

    var totalBytes: Int {
        lock.lock()
        defer { lock.unlock() }
        return bytes
    }
}
