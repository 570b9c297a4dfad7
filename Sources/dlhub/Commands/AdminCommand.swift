import ArgumentParser
import DLHubCore
import Foundation

/// `dlhub admin registry`: what the service skipped in the registry at its last start (site admins).
struct AdminCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin", abstract: "Site admin views of the service.", subcommands: [Registry.self], defaultSubcommand: Registry.self)

    struct Registry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "registry",
            abstract: "List registry versions the service skipped at start (invalid servable.json, duplicate digests) and why.")
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await CLIError.guarding {
                let reply = try await options.client().request("GET", "/v1/admin/registry")
                if options.json { return Output.json(reply.json) }
                let problems = reply.json["problems"]?.arrayValue ?? []
                if problems.isEmpty {
                    print("every version in the registry is served")
                    return
                }
                Output.table(
                    ["SERVABLE", "REASON", "DIRECTORY"],
                    problems.map {
                        [
                            $0["servable"]?.stringValue ?? "", Output.truncate($0["reason"]?.stringValue ?? "", 90),
                            $0["directory"]?.stringValue ?? "",
                        ]
                    })
            }
        }
    }
}
