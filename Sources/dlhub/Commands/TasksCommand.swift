import ArgumentParser
import DLHubCore
import Foundation

/// `dlhub tasks`: my tasks, newest first.
struct TasksCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tasks",
        abstract: "List your tasks, newest first, with their state.",
        discussion: """
            Lists the tasks the service handed out an id for (`dlhub run --async`, or a run that outlived
            its wait). A run answered within its wait is never stored, so it is not listed.
            """)
    @OptionGroup var options: ClientOptions
    @Option(help: "How many tasks to show (1-1000).") var limit = 20

    func run() async throws {
        try await CLIError.guarding {
            let reply = try await options.client().request("GET", "/v1/tasks?limit=\(limit)")
            if options.json { return Output.json(reply.json) }
            let tasks = reply.json["tasks"]?.arrayValue ?? []
            if tasks.isEmpty { print("no tasks; `dlhub run ID --input JSON --async` makes one"); return }
            let format = DateFormatter()
            format.dateFormat = "yyyy-MM-dd HH:mm:ss"
            let rows = tasks.map { t -> [String] in
                let created = t["created"]?.doubleValue.map { format.string(from: Date(timeIntervalSince1970: $0)) } ?? ""
                let items = t["items"]?.intValue ?? 0
                let done = items - (t["remaining"]?.intValue ?? 0)
                return [
                    t["id"]?.stringValue ?? "", t["status"]?.stringValue ?? "", "\(done)/\(items)", created,
                    t["servable"]?.stringValue ?? "",
                ]
            }
            Output.table(["TASK", "STATUS", "DONE", "CREATED", "SERVABLE"], rows)
        }
    }
}
