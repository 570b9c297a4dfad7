import ArgumentParser
import DLHubCore
import Foundation

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
            if let landing = reply.json["landing_url"]?.stringValue {
                print("landing page (register it with DataCite as the DOI's URL): \(landing)")
            }
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
