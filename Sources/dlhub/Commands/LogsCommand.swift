import ArgumentParser
import DLHubCore
import Foundation

/// `dlhub logs owner/name[@N]`: what your servable's workers said.
struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Show your servable's last load errors and what its workers wrote to stderr.",
        discussion: """
            Only the owner reads a servable's logs. They hold load errors (a failed import, a missing file), what a
            worker wrote while loading, and what it wrote while running batches made only of your own inputs: output
            printed while serving anyone else's input is never kept.
            """)
    @OptionGroup var options: ClientOptions
    @Argument(help: "owner/name or owner/name@N.") var id: String

    func run() async throws {
        try await CLIError.guarding {
            let reference = try ServableReference(parsing: id)
            let reply = try await options.client().request("GET", "/v1/servables/\(reference)/logs")
            if options.json { return Output.json(reply.json) }
            let entries = reply.json["entries"]?.arrayValue ?? []
            if entries.isEmpty {
                print("no logs for \(reply.json["servable"]?.stringValue ?? id) yet: they appear once a pilot loads it")
                return
            }
            for e in entries {
                let header =
                    "== \(e["at"]?.stringValue ?? "") \(e["kind"]?.stringValue ?? "") on pilot job \(e["slurm_job_id"]?.intValue ?? 0) (\(e["node"]?.stringValue ?? ""))"
                print(header)
                if let error = e["error"]?.stringValue { print("error: \(error)") }
                if let text = e["text"]?.stringValue, !text.isEmpty { print(text.hasSuffix("\n") ? String(text.dropLast()) : text) }
            }
        }
    }
}
