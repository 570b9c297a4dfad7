import ArgumentParser
import DLHubCore
import Foundation

/// `dlhub status TASK`.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show a task's state, and its result once it has one.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The task id `dlhub run --async` printed.") var task: String
    @Flag(help: "Wait until the task finishes, showing what it waits for.") var wait = false

    func run() async throws {
        try await CLIError.guarding {
            let client = try options.client()
            var reply = try await client.request("GET", "/v1/tasks/\(task)", acceptStatuses: [202])
            if wait {
                let started = Date()
                var progress = RunCommand.Progress()
                while reply.status == 202 {
                    progress.show(reply.json, since: started)
                    reply = try await client.request("GET", "/v1/tasks/\(task)?wait=5", acceptStatuses: [202])
                }
                progress.finish()
            }
            if options.json { return Output.json(reply.json) }
            if reply.status == 202 {
                let doc = TaskDocument(json: reply.json)
                print("\(task): \(doc.status) (\(doc.remaining) of \(doc.items) input(s) to go)")
                return
            }
            try RunCommand.printResult(reply.json, json: false)
        }
    }
}
