import DLHubCore
import Foundation

/// The one writer of a finished task's answer, whether it was answered within the caller's wait
/// (from memory) or fetched later (from the store): the task's fields first, then its outputs
/// spliced in as the worker wrote them, never parsed and written out again. So the same task
/// reads byte for byte the same both ways, as docs/requests.md promises (they used to differ in
/// key order and in how numbers were spelled).
enum TaskAnswer {
    /// The body for `head` (a task document without outputs or errors) and the outcome of each
    /// input, in order: `output` for a request with one `input`, `outputs` (and `errors` when
    /// some failed) for one with `inputs`.
    static func body(_ head: TaskDocument, single: Bool, outcomes: [ItemResult.Outcome?]) -> [UInt8] {
        var body = Self.head(head)
        func output(_ outcome: ItemResult.Outcome?) {
            if case .output(let bytes)? = outcome, !bytes.isEmpty { body += bytes } else { body += Array("null".utf8) }
        }
        func error(_ outcome: ItemResult.Outcome?) {
            if case .error(let message)? = outcome { body += JSONValue.string(message).encoded() } else { body += Array("null".utf8) }
        }
        if single {
            let outcome = outcomes.first ?? nil
            if case .error? = outcome {
                body += Array(#","error":"#.utf8)
                error(outcome)
            } else {
                body += Array(#","output":"#.utf8)
                output(outcome)
            }
        } else {
            body += Array(#","outputs":["#.utf8)
            for (i, outcome) in outcomes.enumerated() {
                if i > 0 { body.append(UInt8(ascii: ",")) }
                output(outcome)
            }
            body.append(UInt8(ascii: "]"))
            if outcomes.contains(where: { if case .error? = $0 { true } else { false } }) {
                body += Array(#","errors":["#.utf8)
                for (i, outcome) in outcomes.enumerated() {
                    if i > 0 { body.append(UInt8(ascii: ",")) }
                    error(outcome)
                }
                body.append(UInt8(ascii: "]"))
            }
        }
        body.append(UInt8(ascii: "}"))
        return body
    }

    /// `head.json.encoded()` without its closing brace (outputs follow): for the members a
    /// finished task has, written straight in the order `encoded()` sorts them, not through a
    /// dictionary built for each answer (the same bytes: `TaskAnswerTests`).
    static func head(_ head: TaskDocument) -> [UInt8] {
        guard head.output == nil, head.outputs == nil, head.error == nil, head.errors == nil, head.waitingFor == nil, head.location == nil
        else {
            var body = head.json.encoded()
            body.removeLast()
            return body
        }
        var out: [UInt8] = [UInt8(ascii: "{")]
        out.reserveCapacity(320)
        func member(_ key: StaticString, _ value: JSONValue) {
            if out.count > 1 { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
            out.append(contentsOf: "\":".utf8)
            out += value.encoded()
        }
        if let cancelled = head.cancelled { member("cancelled", .double(cancelled)) }
        if let n = head.cancelledItems { member("cancelled_items", .int(Int64(n))) }
        member("created", .double(head.created))
        member("digest", .string(head.digest))
        if let finished = head.finished { member("finished", .double(finished)) }
        member("id", .string(head.id))
        member("items", .int(Int64(head.items)))
        member("remaining", .int(Int64(head.remaining)))
        if let n = head.runningItems { member("running_items", .int(Int64(n))) }
        if let finished = head.finished { member("seconds", .double(finished - head.created)) }
        member("servable", .string(head.servable))
        member("status", .string(head.status))
        return out
    }

    /// A task answered within its wait.
    static func body(_ task: LiveTasks.Entry) -> [UInt8] {
        let head = TaskDocument(
            id: task.id, servable: task.servable, digest: task.digest,
            status: task.failed == 0 ? "completed" : (task.failed == task.itemIDs.count ? "failed" : "completed_with_errors"),
            created: task.created, items: task.itemIDs.count, remaining: 0, finished: task.finished ?? Date().timeIntervalSince1970)
        return body(head, single: task.single, outcomes: task.outcomes)
    }

    /// A stored task that finished; `head` is its document (see `TaskRecord.document`), with
    /// whatever the route adds (a cancel's counts).
    static func body(_ task: TaskRecord, head: TaskDocument) -> [UInt8] {
        let outcomes: [ItemResult.Outcome?] = task.items.map { item in
            switch item.state {
            case .done: .output(item.output ?? [])
            case .failed: .error(item.error ?? "failed")
            case .queued: nil
            }
        }
        return body(head, single: task.single, outcomes: outcomes)
    }
}
