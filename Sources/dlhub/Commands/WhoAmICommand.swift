import ArgumentParser
import DLHubCore
import Foundation

/// `dlhub whoami`.
struct WhoAmICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "whoami", abstract: "Show who the service thinks you are.")
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await CLIError.guarding {
            let client = try options.client()
            let reply = try await client.request("GET", "/v1/whoami")
            if options.json { return Output.json(reply.json) }
            let groups = (reply.json["groups"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", ")
            print("\(reply.json["login"]?.stringValue ?? "?") (uid \(reply.json["uid"]?.intValue ?? -1)); groups: \(groups)")
            print("service: \(client.baseURL); credentials: \(client.token != nil ? "token from `dlhub login`" : "munge")")
        }
    }
}
