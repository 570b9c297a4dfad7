import ArgumentParser
import DLHubCore
import Foundation

/// `dlhub pilots`: the pilot jobs serving requests.
struct PilotsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pilots", abstract: "Show the pilot jobs: Slurm job, state and reason, nodes, walltime left, resident servables.")
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await CLIError.guarding {
            let reply = try await options.client().request("GET", "/v1/pilots")
            if options.json { return Output.json(reply.json) }
            var rows: [[String]] = []
            for pool in reply.json["pools"]?.arrayValue ?? [] {
                let name = pool["pool"]?.stringValue ?? ""
                if let paused = pool["paused"]?.stringValue { Output.error("pool \(name) is paused: \(paused)") }
                if let wait = pool["queue_wait_s"]?.intValue, wait >= 5 {
                    Output.error("pool \(name): pilot jobs wait about \(wait) s in Slurm's queue; pilots are submitted that much ahead")
                }
                for p in pool["pilots"]?.arrayValue ?? [] {
                    let left = p["walltime_left_s"]?.intValue.map { "\($0 / 60)m\($0 % 60)s" } ?? "-"
                    let state = (p["state"]?.stringValue ?? "") + (p["draining"]?.boolValue == true ? " (draining)" : "")
                    let isolation = p["isolation"]?.stringValue ?? "-"
                    if isolation == "none" {
                        Output.error("pilot job \(p["job_id"]?.intValue ?? 0) runs workers WITHOUT a sandbox (isolation: none)")
                    } else if isolation.contains("unavailable") {
                        Output.error("pilot job \(p["job_id"]?.intValue ?? 0): \(isolation)")
                    }
                    rows.append([
                        name, String(p["job_id"]?.intValue ?? 0), state, p["reason"]?.stringValue ?? "", p["nodes"]?.stringValue ?? "",
                        left, isolation.split(separator: " ").first.map(String.init) ?? isolation,
                        (p["resident"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ","),
                    ])
                }
            }
            if rows.isEmpty { print("no pilot jobs; one is submitted when a request arrives"); return }
            Output.table(["POOL", "JOBID", "STATE", "REASON", "NODES", "LEFT", "SANDBOX", "RESIDENT"], rows)
        }
    }
}
