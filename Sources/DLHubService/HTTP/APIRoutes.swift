import DLHubArchive
import DLHubCore
import Foundation
import Hummingbird

/// The v1 HTTP API: thin handlers that parse, call the catalog, and answer JSON.
struct APIRoutes: Sendable {
    let catalog: ServableCatalog
    let authenticator: Authenticator
    let environments: EnvironmentStore
    let runner: Runner
    let maxUploadBytes: Int
    let archiveLimits: ArchiveLimits
    /// Where uploads are spooled (local disk, in the state directory).
    let uploads: String
    let metricsText: @Sendable () -> String

    func register(on router: Router<APIRequestContext>) {
        let serviceID = authenticator.serviceID
        router.get("/healthz") { _, _ in Response.json(["status": "ok", "service_id": .string(serviceID)]) }
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(string: metricsText())))
        }
        router.post("/v1/auth/token") { request, _ in
            let caller = try await authenticator.authenticate(authorization: request.headers[.authorization], allowToken: false)
            let (token, expires) = authenticator.issueToken(for: caller)
            return Response.json(["token": .string(token), "expires_at": .int(expires), "login": .string(caller.login)], status: .created)
        }
        router.get("/v1/whoami") { _, context in
            let c = try context.requireCaller()
            return Response.json([
                "login": .string(c.login), "uid": .int(Int64(c.uid)), "gid": .int(Int64(c.gid)),
                "groups": .array(c.groups.map { .string($0) }),
            ])
        }
        router.post("/v1/servables") { request, context in
            let caller = try context.requireCaller()
            let owner = request.uri.queryParameters.get("owner")
            let spool = try await UploadSpool.receive(request.body, into: uploads, limit: maxUploadBytes)
            defer { spool.remove() }
            let record = try await catalog.publish(archive: spool.path, owner: owner, caller: caller, limits: archiveLimits)
            // Its environment starts building now, so that the first run does not wait for all of it.
            if record.metadata.environment.kind == .python, environments.enabled {
                await environments.ensure(record.metadata.environment.requirements, for: record.owner)
            }
            return Response.json(
                [
                    "id": .string(record.id), "version": .int(Int64(record.version)), "digest": .string(record.digest),
                    "servable": record.json, "environment": await environments.describe(record.metadata.environment),
                ],
                status: .created)
        }
        router.get("/v1/servables") { request, context in
            let caller = try context.requireCaller()
            let q = request.uri.queryParameters
            let limitText = q.get("limit")
            let limit = limitText.flatMap { Int($0) } ?? 100
            guard limit >= 1, limit <= 10_000, limitText == nil || Int(limitText!) != nil else {
                throw DLHubError(.badRequest, "limit must be a whole number from 1 to 10000")
            }
            let entries = try await catalog.search(
                query: q.get("q"), owner: q.get("owner"), domain: q.get("domain"), author: q.get("author"), doi: q.get("doi"), limit: limit,
                caller: caller)
            return Response.json(["count": .int(Int64(entries.count)), "servables": .array(entries.map(\.json))])
        }
        router.get("/v1/servables/{owner}") { _, context in
            let caller = try context.requireCaller()
            // The one segment here is a digest (`sha256:...`): Hummingbird names it as the longer routes do.
            let reference = try ServableReference(parsing: try Self.parameter("owner", context))
            return Response.json(try await catalog.resolve(reference, caller: caller).json)
        }
        router.get("/v1/servables/{owner}/{name}") { _, context in
            let caller = try context.requireCaller()
            let reference = try Self.reference(context)
            let record = try await catalog.resolve(reference, caller: caller)
            var json = record.json
            if case .object(var members) = json, let owner = members["owner"]?.stringValue, let name = members["name"]?.stringValue {
                // Only the versions this caller may see: the others do not exist for them.
                let versions = try await catalog.visibleVersions(owner: owner, name: name, caller: caller).map(\.version).sorted()
                members["versions"] = .array(versions.map { .int(Int64($0)) })
                members["environment"] = await environments.describe(record.metadata.environment)
                let citation = Citation(metadata: record.metadata.document, digest: record.digest, url: "", siteDOI: record.siteDOI)
                members["doi"] = record.siteDOI.map { .string($0) } ?? .null
                members["related_identifiers"] = .array(
                    citation.related.map {
                        ["identifier": .string($0.identifier), "type": .string($0.type), "relation": .string($0.relation)]
                    })
                members["license"] = citation.license.map { .string($0) } ?? .null
                members["model_card"] = Self.modelCard(record.directory).map { .string($0) } ?? .null
                // Why requests for it fail now, and when it is tried again (null when it loads).
                members["load_failure"] = await runner.loadFailure(digest: record.digest) ?? .null
                json = .object(members)
            }
            return Response.json(json)
        }
        router.delete("/v1/servables/{owner}/{name}") { request, context in
            let caller = try context.requireCaller()
            guard case .version(let owner, let name, let version) = try Self.reference(context) else {
                throw DLHubError(.badRequest, "withdraw names one version: DELETE /v1/servables/owner/name@N")
            }
            let reason = request.uri.queryParameters.get("reason") ?? ""
            let record = try await catalog.withdraw(owner: owner, name: name, version: version, reason: reason, caller: caller)
            return Response.json(record.json)
        }
    }

    /// The servable's `README.md`, as text (the first 64 KiB).
    static func modelCard(_ directory: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: directory + "/README.md") else { return nil }
        defer { try? handle.close() }
        guard let data = try? handle.read(upToCount: 65536), !data.isEmpty else { return nil }
        var text = String(decoding: data, as: UTF8.self)
        if data.count == 65536 { text += "\n[... the model card continues in README.md]" }
        return text
    }

    static func parameter(_ name: String, _ context: APIRequestContext) throws(DLHubError) -> String {
        guard let raw = context.parameters.get(name) else { throw DLHubError(.badRequest, "missing \(name) in the path") }
        // Most paths hold no escapes: Foundation's decoding cost 1.3% of a run request's CPU.
        guard raw.utf8.contains(UInt8(ascii: "%")) else { return raw }
        return raw.removingPercentEncoding ?? raw
    }

    static func reference(_ context: APIRequestContext) throws(DLHubError) -> ServableReference {
        try ServableReference(parsing: "\(try parameter("owner", context))/\(try parameter("name", context))")
    }
}
