import DLHubCore
import Foundation

/// What a servable's workers said, kept for its owner (`dlhub logs`): load errors and what a
/// worker wrote to stderr while loading, and stderr of batches whose inputs all came from the
/// owner. Stderr of a batch that carried anyone else's input is never kept: it may print that
/// input. Bounded, in memory.
final class ServableLogs: @unchecked Sendable {
    struct Entry: Sendable {
        enum Kind: String, Sendable { case load, batch }
        var at: Date
        var kind: Kind
        var error: String?
        var text: String
        var jobID: UInt32
        var node: String

        var json: JSONValue {
            [
                "at": .string(ISO8601DateFormatter().string(from: at)), "kind": .string(kind.rawValue),
                "error": error.map { .string($0) } ?? .null, "text": .string(text), "slurm_job_id": .int(Int64(jobID)),
                "node": .string(node),
            ]
        }
    }

    static let entriesPerServable = 20
    static let bytesPerEntry = 16 * 1024
    static let servables = 2000

    private var entries: [String: [Entry]] = [:]
    private let lock = NSLock()

    /// Adds an entry for a servable version (by digest).
    func append(_ digest: String, _ entry: Entry) {
        var entry = entry
        if entry.text.utf8.count > Self.bytesPerEntry { entry.text = "…" + String(entry.text.utf8.suffix(Self.bytesPerEntry))! }
        if let e = entry.error, e.utf8.count > Self.bytesPerEntry { entry.error = String(e.utf8.prefix(Self.bytesPerEntry))! + "…" }
        lock.lock()
        defer { lock.unlock() }
        if entries[digest] == nil, entries.count >= Self.servables { entries.removeAll() }
        entries[digest, default: []].append(entry)
        if entries[digest]!.count > Self.entriesPerServable { entries[digest]!.removeFirst() }
    }

    /// The entries for a servable version, oldest first.
    func entries(for digest: String) -> [Entry] {
        lock.lock()
        defer { lock.unlock() }
        return entries[digest] ?? []
    }
}
