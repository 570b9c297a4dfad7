import DLHubCore
import Foundation
import Hummingbird

/// Citing a servable version, the DOI its site minted for it, and checking its digest.
struct CitationRoutes: Sendable {
    let catalog: ServableCatalog
    /// The service's URL as clients know it (set once it listens).
    let advertisedURL: LockedBox<String>

    func register(on router: Router<APIRequestContext>) {
        router.get("/v1/servables/{owner}/{name}/citation") { request, context in
            let caller = try context.requireCaller()
            let record = try await catalog.resolve(try APIRoutes.reference(context), caller: caller)
            let citation = citation(record)
            let name = request.uri.queryParameters.get("format") ?? "json"
            if name == "json" {
                var doc: [String: JSONValue] = [:]
                for format in Citation.Format.allCases where format != .datacite { doc[format.rawValue] = .string(citation.render(format)) }
                doc["datacite"] = citation.datacite
                return Response.json(.object(doc))
            }
            guard let format = Citation.Format(rawValue: name) else {
                throw DLHubError(.badRequest, "format is one of bibtex, datacite, cff, text or json, not '\(name.prefix(40))'")
            }
            let type: String
            switch format {
            case .bibtex: type = "application/x-bibtex; charset=utf-8"
            case .datacite: type = "application/vnd.datacite.datacite+json"
            case .cff: type = "application/x-yaml; charset=utf-8"
            case .text: type = "text/plain; charset=utf-8"
            }
            return Response(
                status: .ok, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(string: citation.render(format))))
        }
        router.put("/v1/servables/{owner}/{name}/doi") { request, context in
            let caller = try context.requireCaller()
            guard case .version(let owner, let name, let version) = try APIRoutes.reference(context) else {
                throw DLHubError(.badRequest, "a DOI names one version: PUT /v1/servables/owner/name@N/doi")
            }
            let body = try await request.body.collect(upTo: 4096)
            guard let doc = try? JSONValue.parse(Array(buffer: body)), let doi = doc["doi"]?.stringValue else {
                throw DLHubError(.badRequest, "send {\"doi\": \"10.5555/...\"}: the DOI your site minted for this version")
            }
            let record = try await catalog.attachDOI(owner: owner, name: name, version: version, doi: doi, caller: caller)
            // The page the site registers with DataCite as the DOI's URL.
            var json = record.json
            if case .object(var members) = json {
                members["landing_url"] = .string(landingURL(record))
                json = .object(members)
            }
            return Response.json(json)
        }
        router.get("/v1/servables/{owner}/{name}/verify") { _, context in
            let caller = try context.requireCaller()
            let record = try await catalog.resolve(try APIRoutes.reference(context), caller: caller)
            let (computed, files) = try await catalog.verify(record)
            return Response.json([
                "servable": .string("\(record.id)@\(record.version)"), "digest": .string(record.digest), "computed": .string(computed),
                "matches": .bool(computed == record.digest),
                "files": .array(files.map { ["path": .string($0.path), "size": .int(Int64($0.size)), "sha256": .string($0.sha256)] }),
            ])
        }
    }

    /// Citations name the version's page in the web catalogue, which a DOI resolves to.
    func citation(_ record: RegistryRecord) -> Citation {
        Citation(metadata: record.metadata.document, digest: record.digest, url: landingURL(record), siteDOI: record.siteDOI)
    }

    func landingURL(_ record: RegistryRecord) -> String {
        WebRoutes.landingURL(record, serviceURL: advertisedURL.value)
    }
}
