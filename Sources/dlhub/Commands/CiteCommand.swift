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
