import ArgumentParser
import DLHubCore
import Foundation

/// `dlhub env ls|rebuild`: the Python environments the service built for servables (site admins).
struct EnvCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "env", abstract: "List or rebuild the servable environments (site admins).",
        subcommands: [List.self, Rebuild.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List the environments and their state.")
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await CLIError.guarding {
                let reply = try await options.client().request("GET", "/v1/environments")
                if options.json { return Output.json(reply.json) }
                let rows = (reply.json["environments"]?.arrayValue ?? []).map { e in
                    [
                        e["id"]?.stringValue ?? "", e["state"]?.stringValue ?? "", e["last_used"]?.stringValue ?? "-",
                        Output.truncate(
                            (e["packages"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: " ")
                                + (e["error"]?.stringValue.map { "  ERROR: \($0)" } ?? ""), 100),
                    ]
                }
                if rows.isEmpty {
                    print("no environments yet: they are built when servables that declare dependencies are published")
                } else {
                    Output.table(["ID", "STATE", "LAST USED", "PACKAGES"], rows)
                }
            }
        }
    }

    struct Rebuild: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rebuild", abstract: "Throw an environment away and build it again.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The environment's id, from `dlhub env ls`.") var id: String

        func run() async throws {
            try await CLIError.guarding {
                let reply = try await options.client().request("POST", "/v1/environments/\(id)/rebuild")
                if options.json { return Output.json(reply.json) }
                print("rebuilding \(id); `dlhub env ls` shows when it is ready")
            }
        }
    }
}
