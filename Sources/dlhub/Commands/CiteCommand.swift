import ArgumentParser
import DLHubCore
import Foundation

/// `dlhub cite ID`: how to cite a servable version.
struct CiteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cite",
        abstract: "Print how to cite a servable version: text, BibTeX, DataCite 4 JSON or CFF.",
        discussion: """
            Examples:
              dlhub cite alice/iris@2 --format bibtex >> paper.bib
              dlhub cite alice/iris@2 --format cff > CITATION.cff
            The citation names the version's content digest (its persistent identifier) and, once the
            owner has attached one (dlhub doi), the DOI the site minted for it.
            """)
    @OptionGroup var options: ClientOptions
    @Argument(help: "owner/name or owner/name@N.") var id: String
    @Option(help: "text, bibtex, datacite or cff.") var format = "text"

    func run() async throws {
        try await CLIError.guarding {
            let reference = try ServableReference(parsing: id)
            guard Citation.Format(rawValue: format) != nil else {
                throw CLIError("--format is text, bibtex, datacite or cff, not '\(format)'")
            }
            let path = try await DoiCommand.path(reference, options: options) + "/citation?format=json"
            let reply = try await options.client().request("GET", path)
            if options.json { return Output.json(reply.json) }
            if format == "datacite" { return Output.json(reply.json["datacite"] ?? .null) }
            print(reply.json[format]?.stringValue ?? "", terminator: "")
        }
    }
}

/// `dlhub doi ID@N DOI`: the owner records the DOI their site minted.
struct DoiCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doi",
        abstract: "Attach the DOI your site minted for a version (its files and digest do not change).",
        discussion: "Example: dlhub doi alice/iris@2 10.5555/dlhub.alice.iris.2")
    @OptionGroup var options: ClientOptions
    @Argument(help: "owner/name@N: the version the DOI names.") var id: String
    @Argument(help: "The DOI, e.g. 10.5555/abc (https://doi.org/... is accepted too).") var doi: String

    func run() async throws {
        try await CLIError.guarding {
            let reference = try ServableReference(parsing: id)
            guard case .version = reference else { throw CLIError("a DOI names one version: give owner/name@N, e.g. \(id)@1") }
            let body = JSONValue.object(["doi": .string(doi)]).encoded()
            let reply = try await options.client().request("PUT", "/v1/servables/\(reference)/doi", body: body)
            if options.json { return Output.json(reply.json) }
            print(
                "\(reference): DOI \(reply.json["doi"]?.stringValue ?? doi) attached; its digest is still \(reply.json["digest"]?.stringValue ?? "")"
            )
        }
    }

    /// `/v1/servables/owner/name[@N]` for a reference; a digest is first resolved to its owner/name@N.
    static func path(_ reference: ServableReference, options: ClientOptions) async throws -> String {
        if case .digest = reference {
            let reply = try await options.client().request("GET", "/v1/servables/\(reference)")
            return "/v1/servables/\(reply.json["id"]?.stringValue ?? "")@\(reply.json["version"]?.intValue ?? 0)"
        }
        return "/v1/servables/\(reference)"
    }
}

/// `dlhub verify ID`: recompute a version's digest from its files.
struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Recompute a version's digest from its files and compare it with the one it was published with.",
        discussion: """
            Without --directory the service recomputes it from the registry's files. With --directory
            it is recomputed here from a copy of the servable's files (with its servable.json), the way
            docs/citation.md describes, and compared with the digest the service recorded.
            Exit status 1 when they differ.
            """)
    @OptionGroup var options: ClientOptions
    @Argument(help: "owner/name, owner/name@N or sha256:<digest>.") var id: String
    @Option(help: "A local copy of the servable's files to check instead.") var directory: String?

    func run() async throws {
        try await CLIError.guarding {
            let reference = try ServableReference(parsing: id)
            let recorded: String
            let computed: String
            let files: Int
            let name: String
            if let directory {
                let reply = try await options.client().request("GET", "/v1/servables/\(reference)")
                recorded = reply.json["digest"]?.stringValue ?? ""
                name = "\(reply.json["id"]?.stringValue ?? "")@\(reply.json["version"]?.intValue ?? 0)"
                guard let data = FileManager.default.contents(atPath: directory + "/servable.json") else {
                    throw CLIError("\(directory) has no servable.json: give a copy of the published version's files")
                }
                let manifest = try ContentDigest.manifest(ofDirectory: directory)
                computed = ContentDigest.compute(metadata: try JSONValue.parse(Array(data)), files: manifest)
                files = manifest.count
            } else {
                let path = try await DoiCommand.path(reference, options: options) + "/verify"
                let reply = try await options.client().request("GET", path)
                if options.json { Output.json(reply.json) }
                recorded = reply.json["digest"]?.stringValue ?? ""
                computed = reply.json["computed"]?.stringValue ?? ""
                files = reply.json["files"]?.arrayValue?.count ?? 0
                name = reply.json["servable"]?.stringValue ?? id
            }
            guard computed == recorded else {
                throw CLIError(
                    "\(name): the files no longer match: published as \(recorded), its \(files) file(s) now give \(computed). Tell the owner and the site admin"
                )
            }
            if !options.json { print("\(name): ok, its \(files) file(s) and metadata give \(computed), the digest it was published with") }
        }
    }
}
