import ArgumentParser
import DLHubCore
import Foundation

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
