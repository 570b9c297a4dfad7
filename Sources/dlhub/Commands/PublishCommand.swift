import ArgumentParser
import DLHubArchive
import DLHubCore
import Foundation

/// `dlhub publish DIR`: upload a servable directory as the next version.
struct PublishCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Publish a servable directory (with its servable.json, or the dlhub.json of DLHub's SDK) as a new version.")

    @OptionGroup var options: ClientOptions
    @Argument(help: "The servable directory.") var directory: String = "."

    func run() async throws {
        try await CLIError.guarding {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw CLIError("\(directory) is not a directory; give the servable directory that holds servable.json")
            }
            // DLHub's SDK writes its metadata as dlhub.json: sent as the servable.json it is.
            var renaming: [String: String] = [:]
            if !FileManager.default.fileExists(atPath: directory + "/servable.json") {
                guard FileManager.default.fileExists(atPath: directory + "/dlhub.json") else {
                    throw CLIError("\(directory) has no servable.json (nor the SDK's dlhub.json); make one with `dlhub init`")
                }
                renaming["dlhub.json"] = "servable.json"
            }
            let archive = NSTemporaryDirectory() + "/dlhub-publish-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).tar.gz"
            defer { unlink(archive) }
            try ArchiveWriter.pack(directory, to: archive, renaming: renaming)
            let reply = try await options.client().request("POST", "/v1/servables", bodyFile: archive, contentType: "application/gzip")
            if options.json { return Output.json(reply.json) }
            let id = reply.json["id"]?.stringValue ?? "?"
            let version = reply.json["version"]?.intValue ?? 0
            print("published \(id)@\(version)")
            print("digest    \(reply.json["digest"]?.stringValue ?? "")")
        }
    }
}
