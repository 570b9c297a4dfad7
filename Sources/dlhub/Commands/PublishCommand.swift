import ArgumentParser
import DLHubCore
import Foundation

/// `dlhub publish DIR`: upload a servable directory as the next version.
struct PublishCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish", abstract: "Publish a servable directory (with its servable.json) as a new version.")

    @OptionGroup var options: ClientOptions
    @Argument(help: "The servable directory.") var directory: String = "."

    func run() async throws {
        try await CLIError.guarding {
            let archive = try DirectoryArchiver.archive(directory)
            let reply = try await options.client().request("POST", "/v1/servables", body: archive, contentType: "application/x-tar")
            if options.json { return Output.json(reply.json) }
            let id = reply.json["id"]?.stringValue ?? "?"
            let version = reply.json["version"]?.intValue ?? 0
            print("published \(id)@\(version)")
            print("digest    \(reply.json["digest"]?.stringValue ?? "")")
        }
    }
}
