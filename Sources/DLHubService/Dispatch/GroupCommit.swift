import DLHubCore

/// Results of stored tasks on their way to the store, a write at a time: results that land
/// while a write is under way go together in the next one, so a busy service writes once per
/// round, not once per batch. A plain value; the dispatcher does the writing:
///
///     if commits.add(results) { while let group = commits.next() { write(group) } }
struct GroupCommit {
    private var backlog: [ItemResult] = []
    private var writing = false

    /// Results waiting for a write.
    var waiting: Int { backlog.count }

    /// Adds results; true when no write is under way, so the caller starts writing.
    mutating func add(_ results: [ItemResult]) -> Bool {
        backlog += results
        guard !writing else { return false }
        writing = true
        return true
    }

    /// The next group to write: everything waiting; nil when nothing is, which ends the writing.
    mutating func next() -> [ItemResult]? {
        guard !backlog.isEmpty else {
            writing = false
            return nil
        }
        defer { backlog = [] }
        return backlog
    }
}
