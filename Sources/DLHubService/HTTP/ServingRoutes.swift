import DLHubCore
import Foundation
import Hummingbird

/// Run requests, task status and the pilot table.
struct ServingRoutes: Sendable {
    let runner: Runner
    let store: TaskStore
    let waiters: TaskWaiters
    let manager: PilotManager
    let maxRequestBytes: Int

    /// Longest `?wait=` honoured, in seconds.
    static let maxWait = 3600.0

    func register(on router: Router<APIRequestContext>) {
        router.post("/v1/servables/{owner}/{name}/run") { request, context in
            let caller = try context.requireCaller()
            let reference = try APIRoutes.reference(context)
            let wait = try Self.waitSeconds(request.uri.queryParameters.get("wait"))
            let body = try await request.body.collect(upTo: maxRequestBytes)
            // Waiting callers are answered from memory; a task id is handed out only once it is stored.
            let accepted = try await runner.accept(reference, body: Array(buffer: body), caller: caller, wait: wait)
            if accepted.live {
                if let answered = accepted.answered { return Self.response(answered) }
                if let answered = try await runner.dispatcher.persistLive(accepted.taskID) { return Self.response(answered) }
            }
            return try await taskResponse(accepted.taskID, caller: caller)
        }
        router.get("/v1/tasks/{id}") { request, context in
            let caller = try context.requireCaller()
            let id = try APIRoutes.parameter("id", context)
            let wait = try Self.waitSeconds(request.uri.queryParameters.get("wait"))
            // Whose task it is comes first: nobody waits on (or learns the timing of) another user's task.
            guard wait > 0 else { return try await taskResponse(id, caller: caller) }
            guard let task = try await store.task(id), task.owner == caller.login else { throw Self.noSuchTask(id) }
            if task.finished == nil { _ = await waiters.wait(for: id, seconds: wait) }
            return try await taskResponse(id, caller: caller)
        }
        router.get("/v1/tasks") { request, context in
            let caller = try context.requireCaller()
            let limitText = request.uri.queryParameters.get("limit")
            guard let limit = limitText.map({ Int($0) }) ?? 50, (1...1000).contains(limit) else {
                throw DLHubError(.badRequest, "limit must be a whole number from 1 to 1000, e.g. ?limit=20")
            }
            let tasks = try await store.tasks(owner: caller.login, limit: limit)
            var documents: [JSONValue] = []
            for task in tasks {
                let running = task.finished == nil ? await runner.dispatcher.isRunning(task.id) : false
                documents.append(task.document(running: running).json)
            }
            return Response.json(["tasks": .array(documents)])
        }
        router.post("/v1/tasks/{id}/cancel") { _, context in
            let caller = try context.requireCaller()
            let id = try APIRoutes.parameter("id", context)
            // Only the owner may cancel, and nobody else learns that the task exists.
            guard let task = try await store.task(id), task.owner == caller.login else { throw Self.noSuchTask(id) }
            guard task.finished == nil else {
                throw DLHubError(.conflict, "task \(id) already finished (\(task.status ?? "finished")); there is nothing to cancel")
            }
            let outcome = try await runner.dispatcher.cancel(id, message: "cancelled by \(caller.login) before it ran")
            var document = try await taskDocument(id, caller: caller)
            document.cancelledItems = outcome.cancelled
            document.runningItems = outcome.running
            return Response.json(document.json)
        }
        router.get("/v1/servables/{owner}/{name}/logs") { _, context in
            let caller = try context.requireCaller()
            let record = try await runner.catalog.resolve(try APIRoutes.reference(context), caller: caller)
            // Only the owner: a worker's words may carry what it was given.
            guard record.owner == caller.login else {
                throw DLHubError(.notFound, "no logs of \(record.id) for you: only its owner can read a servable's logs")
            }
            let entries = await runner.dispatcher.logEntries(digest: record.digest)
            return Response.json(["servable": .string("\(record.id)@\(record.version)"), "entries": .array(entries)])
        }
        router.get("/v1/pilots") { _, context in
            let caller = try context.requireCaller()
            return Response.json(await manager.report(for: caller))
        }
    }

    /// `?wait=S`: seconds, at most `maxWait`.
    static func waitSeconds(_ text: String?) throws(DLHubError) -> Double {
        guard let text else { return 0 }
        guard let s = Double(text), s >= 0, s.isFinite else {
            throw DLHubError(.badRequest, "wait must be a number of seconds, e.g. ?wait=30")
        }
        return min(s, maxWait)
    }

    /// A live task's answer, with the outputs the pilot sent spliced in as they are.
    static func response(_ task: LiveTasks.Entry) -> Response {
        let head = TaskDocument(
            id: task.id, servable: task.servable, digest: task.digest,
            status: task.failed == 0 ? "completed" : (task.failed == task.itemIDs.count ? "failed" : "completed_with_errors"),
            created: task.created, items: task.itemIDs.count, remaining: 0, finished: task.finished ?? Date().timeIntervalSince1970)
        var body = head.json.encoded()
        body.removeLast()  // the closing brace: outputs follow
        func append(_ outcome: ItemResult.Outcome?) {
            if case .output(let bytes)? = outcome { body += bytes } else { body += Array("null".utf8) }
        }
        func appendError(_ outcome: ItemResult.Outcome?) {
            if case .error(let message)? = outcome { body += JSONValue.string(message).encoded() } else { body += Array("null".utf8) }
        }
        if task.single {
            if case .error? = task.outcomes.first ?? nil {
                body += Array(#","error":"#.utf8)
                appendError(task.outcomes[0])
            } else {
                body += Array(#","output":"#.utf8)
                append(task.outcomes.first ?? nil)
            }
        } else {
            body += Array(#","outputs":["#.utf8)
            for (i, outcome) in task.outcomes.enumerated() {
                if i > 0 { body.append(UInt8(ascii: ",")) }
                append(outcome)
            }
            body.append(UInt8(ascii: "]"))
            if task.failed > 0 {
                body += Array(#","errors":["#.utf8)
                for (i, outcome) in task.outcomes.enumerated() {
                    if i > 0 { body.append(UInt8(ascii: ",")) }
                    appendError(outcome)
                }
                body.append(UInt8(ascii: "]"))
            }
        }
        body.append(UInt8(ascii: "}"))
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    static func noSuchTask(_ id: String) -> DLHubError {
        DLHubError(.notFound, "no task \(id.prefix(100)) of yours; tasks are kept for a limited time after they finish")
    }

    func taskResponse(_ id: String, caller: Caller) async throws(DLHubError) -> Response {
        let document = try await taskDocument(id, caller: caller)
        return Response.json(document.json, status: document.finished != nil ? .ok : .accepted)
    }

    /// A stored task as its owner sees it, with what it waits for while unfinished.
    func taskDocument(_ id: String, caller: Caller) async throws(DLHubError) -> TaskDocument {
        guard let task = try await store.task(id), task.owner == caller.login else { throw Self.noSuchTask(id) }
        guard task.finished == nil else { return task.document() }
        var document = task.document(running: await runner.dispatcher.isRunning(id))
        document.location = "/v1/tasks/\(id)"
        if let building = await runner.environmentWait(digest: task.digest) {
            document.status = "building_environment"
            document.waitingFor = building
        } else {
            document.waitingFor = await manager.waiting(pool: task.pool)
        }
        return document
    }
}
