import ArgumentParser
import DLHubCore
import Foundation

/// `dlhub cancel TASK`.
struct CancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel",
        abstract: "Cancel a task: its inputs that have not started never run.",
        discussion: "Inputs already running on a pilot finish and keep their results. Only the task's owner can cancel it.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The task id.") var task: String

    func run() async throws {
        try await CLIError.guarding {
            let reply = try await options.client().request("POST", "/v1/tasks/\(task)/cancel", body: Array("{}".utf8))
            if options.json { return Output.json(reply.json) }
            let doc = TaskDocument(json: reply.json)
            let cancelled = doc.cancelledItems ?? 0
            let running = doc.runningItems ?? 0
            var line = "\(task): cancelled \(cancelled) input(s)"
            if running > 0 { line += "; \(running) already running will finish (dlhub status \(task))" }
            print(line)
        }
    }
}
