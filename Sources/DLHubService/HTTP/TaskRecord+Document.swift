import DLHubCore

extension TaskRecord {
    /// The task as the API shows it (`TaskDocument`); `running` says whether a pilot has some of
    /// its inputs now (only the dispatcher knows).
    public func document(running: Bool = false) -> TaskDocument {
        var doc = TaskDocument(
            id: id, servable: servable, digest: digest, status: status ?? (running ? "running" : "queued"), created: created,
            items: itemCount, remaining: remaining, finished: finished, cancelled: cancelled)
        if finished != nil {
            func value(_ item: Item) -> JSONValue { item.output.flatMap { try? JSONValue.parse($0) } ?? .null }
            if single, let item = items.first {
                if item.state == .done { doc.output = value(item) } else { doc.error = item.error ?? "failed" }
            } else {
                doc.outputs = items.map { $0.state == .done ? value($0) : .null }
                if failed > 0 { doc.errors = items.map { $0.state == .failed ? ($0.error ?? "failed") : nil } }
            }
        }
        return doc
    }
}
