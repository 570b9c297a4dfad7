import ArgumentParser
import DLHubCore
import DLHubPilot
import Foundation

/// `dlhub test DIR --input JSON`: try a servable before publishing it.
struct TestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Try a servable directory on one input, on this node, before publishing it.",
        discussion: """
            Checks servable.json as publishing would, loads the servable in a worker started the way a
            pilot starts one (the same worker shim, in the same bubblewrap sandbox), runs the input and
            prints the output, or the error with the worker's full traceback. No Slurm job is submitted
            and nothing is published.

            Examples:
              dlhub test . --input '[[5.1, 3.5, 1.4, 0.2]]'
              dlhub test my-model --input '"hello"' --python ~/envs/torch/bin/python
            """)

    @Argument(help: "The servable directory (with servable.json).") var directory: String = "."
    @Option(help: "The input, as JSON.") var input: String
    @Option(name: .customLong("param"), help: "A keyword argument as key=value (value parsed as JSON when it can be).") var params:
        [String] = []
    @Option(help: "Python for Python servables (default: $DLHUB_WORKER_PYTHON, else python3).") var python: String?
    @Option(help: "Worker sandbox: bubblewrap (as on the cluster) or none.") var isolation = "bubblewrap"
    @Flag(help: "Print a JSON document (output, error, log) instead.") var json = false

    func run() async throws {
        try await CLIError.guarding {
            let value = try RunCommand.parseJSON(input, what: "--input")
            let parameters = try RunCommand.parameters(params)
            guard let mode = IsolationMode(rawValue: isolation), mode != .apptainer else {
                throw CLIError("--isolation is bubblewrap or none, not '\(isolation)'")
            }
            let env = ProcessInfo.processInfo.environment
            let interpreter = python ?? env["DLHUB_WORKER_PYTHON"].flatMap { $0.isEmpty ? nil : $0 } ?? "python3"
            let settings = LocalTrial.Settings(python: interpreter, workerScript: try Self.workerScript(), isolation: mode)
            let outcome = try LocalTrial.run(directory: directory, input: value, parameters: parameters, settings: settings)
            if json {
                var doc: [String: JSONValue] = [
                    "loaded": .bool(outcome.loaded), "log": .string(outcome.log), "sandbox": .string(outcome.sandbox),
                    "notes": .array(outcome.notes.map { .string($0) }),
                ]
                if let output = outcome.output { doc["output"] = output }
                if let error = outcome.error { doc["error"] = .string(error) }
                Output.json(.object(doc))
                if outcome.error != nil { throw ExitCode.failure }
                return
            }
            // The worker's stderr (its tracebacks) has already been shown as it wrote it.
            for note in outcome.notes { Output.error("note: \(note)") }
            if let error = outcome.error {
                throw CLIError(outcome.loaded ? "the servable failed on this input: \(error)" : "the servable did not load: \(error)")
            }
            Output.json(outcome.output ?? .null)
        }
    }

    /// The worker shim of this install: `$DLHUB_HOME/share/dlhub/python`, or next to `bin/`.
    static func workerScript() throws -> String {
        let env = ProcessInfo.processInfo.environment
        var candidates: [String] = []
        if let home = env["DLHUB_HOME"] { candidates.append(home + "/share/dlhub/python/dlhub_worker.py") }
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        candidates.append(executable.deletingLastPathComponent().path + "/share/dlhub/python/dlhub_worker.py")
        // A development build: .build/<triple>/<config>/dlhub in the checkout.
        var up = executable
        for _ in 0..<3 {
            up = up.deletingLastPathComponent()
            candidates.append(up.path + "/python/dlhub_worker.py")
        }
        guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
            throw CLIError(
                "cannot find the worker shim dlhub_worker.py (looked in \(candidates.joined(separator: ", "))); `module load dlhub` sets DLHUB_HOME"
            )
        }
        return found
    }
}
