import ArgumentParser
import DLHubCore
import Foundation

/// `dlhub withdraw owner/name@N`.
struct WithdrawCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "withdraw", abstract: "Withdraw one version; its identifier keeps resolving to a tombstone.")

    @OptionGroup var options: ClientOptions
    @Argument(help: "owner/name@N") var id: String
    @Option(help: "Why, for the tombstone.") var reason: String = ""

    func run() async throws {
        try await CLIError.guarding {
            guard case .version = try ServableReference(parsing: id) else {
                throw CLIError("withdraw one version at a time: give owner/name@N")
            }
            let reason = SearchCommand.escape(self.reason)
            let reply = try await options.client().request("DELETE", "/v1/servables/\(id)?reason=\(reason)")
            if options.json { return Output.json(reply.json) }
            print("withdrew \(id) (\(reply.json["digest"]?.stringValue ?? "")); its number will not be reused")
        }
    }
}
