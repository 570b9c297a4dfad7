import DLHubCore

extension TaskRecord {
    /// The API document: `output` (or `error`) for a single input, `outputs` and `errors` for many.
    public func json(running: Bool = false, extra: [String: JSONValue] = [:]) -> JSONValue {
        var out: [String: JSONValue] = [
            "id": .string(id), "servable": .string(servable), "digest": .string(digest),
            "status": .string(status ?? (running ? "running" : "queued")),
            "created": .double(created), "items": .int(Int64(itemCount)), "remaining": .int(Int64(remaining)),
        ]
        if let cancelled { out["cancelled"] = .double(cancelled) }
        if let finished { out["finished"] = .double(finished); out["seconds"] = .double(finished - created) }
        if finished != nil {
            func value(_ item: Item) -> JSONValue { item.output.flatMap { try? JSONValue.parse($0) } ?? .null }
            if single, let item = items.first {
                if item.state == .done { out["output"] = value(item) } else { out["error"] = .string(item.error ?? "failed") }
            } else {
                out["outputs"] = .array(items.map { $0.state == .done ? value($0) : .null })
                if failed > 0 { out["errors"] = .array(items.map { $0.state == .failed ? .string($0.error ?? "failed") : .null }) }
            }
        }
        for (k, v) in extra { out[k] = v }
        return .object(out)
    }
}
