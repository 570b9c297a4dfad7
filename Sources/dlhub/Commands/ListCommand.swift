import ArgumentParser
import DLHubCore
import Foundation

/// `dlhub ls`: the servables you can see.
struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List the servables you can see (latest versions).")

    @OptionGroup var options: ClientOptions
    @Option(help: "Only this owner's servables.") var owner: String?
    @Option(help: "Only servables in this domain.") var domain: String?
    @Option(help: "At most this many.") var limit: Int = 100

    func run() async throws {
        try await CLIError.guarding {
            try await SearchCommand.show(query: nil, owner: owner, domain: domain, limit: limit, options: options)
        }
    }
}
