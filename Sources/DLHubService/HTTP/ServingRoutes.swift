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
            if let answered = accepted.answered { return Self.response(TaskAnswer.body(answered)) }
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
            // What each is, not what it answered: that is `GET /v1/tasks/{id}`.
            var documents: [JSONValue] = []
            for task in tasks {
                let running = task.finished == nil ? await runner.isRunning(task.id) : false
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
            let outcome = try await runner.cancel(id, message: "cancelled by \(caller.login) before it ran")
            return try await taskResponse(id, caller: caller, status: .ok) {
                $0.cancelledItems = outcome.cancelled
                $0.runningItems = outcome.running
            }
        }
        router.get("/v1/servables/{owner}/{name}/logs") { _, context in
            let caller = try context.requireCaller()
            let record = try await runner.catalog.resolve(try APIRoutes.reference(context), caller: caller)
            // Only the owner: a worker's words may carry what it was given.
            guard record.owner == caller.login else {
                throw DLHubError(.notFound, "no logs of \(record.id) for you: only its owner can read a servable's logs")
            }
            let entries = await runner.logEntries(digest: record.digest)
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

    /// A JSON body written by hand (`TaskAnswer`).
    static func response(_ body: [UInt8], status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    static func noSuchTask(_ id: String) -> DLHubError {
        DLHubError(.notFound, "no task \(id.prefix(100)) of yours; tasks are kept for a limited time after they finish")
    }

    /// A stored task as its owner sees it: 200 with its answer once finished, 202 before
    /// (`status` overrides the code; `amend` adds to the document).
    func taskResponse(
        _ id: String, caller: Caller, status: HTTPResponse.Status? = nil, amend: (inout TaskDocument) -> Void = { _ in }
    ) async throws(DLHubError) -> Response {
        guard let task = try await store.task(id), task.owner == caller.login else { throw Self.noSuchTask(id) }
        var document = try await taskDocument(task)
        amend(&document)
        if task.finished != nil { return Self.response(TaskAnswer.body(task, head: document), status: status ?? .ok) }
        return Self.response(document.json.encoded(), status: status ?? .accepted)
    }

    /// A stored task as its owner sees it, with what it waits for while unfinished.
    func taskDocument(_ task: TaskRecord) async throws(DLHubError) -> TaskDocument {
        guard task.finished == nil else { return task.document() }
        var document = task.document(running: await runner.isRunning(task.id))
        document.location = "/v1/tasks/\(task.id)"
        if let building = await runner.environmentWait(digest: task.digest) {
            document.status = "building_environment"
            document.waitingFor = building
        } else {
            document.waitingFor = await manager.waiting(pool: task.pool)
        }
        return document
    }
}
