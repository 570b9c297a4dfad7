import ArgumentParser
import DLHubCore
import Foundation

/// `dlhub run ID --input JSON`: run a servable and print its output.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a servable on the cluster and print its output as JSON.",
        discussion: """
            Examples:
              dlhub run alice/iris --input '[[5.1, 3.5, 1.4, 0.2]]'
              dlhub run alice/iris@2 --inputs records.json        (a JSON list: one run per element)
              dlhub run alice/spectrum-summary --input '[1,2,3]' --param scale=2
              dlhub run alice/iris --input '[[5.1,3.5,1.4,0.2]]' --async   (prints the task id)
              dlhub run alice/iris --inputs big.jsonl --output out.jsonl
                  (one JSON input per line, any number: sent in chunks, one {"output": ...} or
                   {"error": ...} line per input in out.jsonl; after Ctrl-C the same command resumes)
            While the request waits for a pilot job to start, the Slurm job and its state are shown on stderr.
            """)

    @OptionGroup var options: ClientOptions
    @Argument(help: "owner/name, owner/name@N or sha256:<digest>.") var id: String
    @Option(help: "One input, as JSON.") var input: String?
    @Option(help: "A file holding a JSON list of inputs (- for stdin); each is run separately.") var inputs: String?
    @Option(name: .customLong("param"), help: "A keyword argument as key=value (value parsed as JSON when it can be).") var params:
        [String] = []
    @Flag(name: .customLong("async"), help: "Do not wait: print the task id.") var async = false
    @Option(help: "Seconds to wait for the result before giving up (the task keeps running).") var wait: Double = 3600
    @Option(help: "With --inputs FILE.jsonl (one input per line): write one result per line here; resumable.") var output: String?
    @Option(help: "Inputs per request with --output.") var chunk = 1000
    @Flag(help: "With --output: start from the beginning instead of resuming.") var restart = false

    func run() async throws {
        try await CLIError.guarding {
            let reference = try ServableReference(parsing: id)
            if let output {
                guard let inputs, inputs != "-" else { throw CLIError("--output goes with --inputs FILE.jsonl: one JSON input per line") }
                guard input == nil, !async else { throw CLIError("--output runs a whole --inputs file; leave out --input and --async") }
                guard (1...Self.maxInputs).contains(chunk) else { throw CLIError("--chunk is from 1 to \(Self.maxInputs)") }
                var bulk = BulkRun(
                    client: try options.client(), reference: reference, inputPath: inputs, outputPath: output,
                    parameters: try Self.parameters(params))
                bulk.chunkInputs = chunk
                bulk.restart = restart
                return try await bulk.run()
            }
            if let inputs, inputs.hasSuffix(".jsonl") {
                throw CLIError("\(inputs) looks like JSON Lines (one input per line): give --output FILE for the results")
            }
            var body: [String: JSONValue] = [:]
            switch (input, inputs) {
            case (let text?, nil): body["input"] = try Self.parseJSON(text, what: "--input")
            case (nil, let path?):
                let data = path == "-" ? FileHandle.standardInput.readDataToEndOfFile() : FileManager.default.contents(atPath: path)
                guard let data else { throw CLIError("cannot read \(path)") }
                let list = try Self.parseJSON(String(decoding: data, as: UTF8.self), what: path)
                guard list.arrayValue != nil else { throw CLIError("\(path) must hold a JSON list of inputs") }
                body["inputs"] = list
            case (nil, nil): throw CLIError("give --input JSON or --inputs FILE")
            default: throw CLIError("give --input or --inputs, not both")
            }
            let parameters = try Self.parameters(params)
            if !parameters.isEmpty { body["parameters"] = .object(parameters) }
            let client = try options.client()
            let firstWait = async ? 0 : min(wait, 1)
            var reply = try await client.request(
                "POST", "/v1/servables/\(reference)/run?wait=\(firstWait)", body: JSONValue.object(body).encoded())
            let taskID = reply.json["id"]?.stringValue ?? ""
            if async {
                if options.json { return Output.json(reply.json) }
                print(taskID)
                return
            }
            let started = Date()
            var progress = Progress()
            while reply.status == 202 {
                progress.show(reply.json, since: started)
                guard Date().timeIntervalSince(started) < wait else {
                    progress.finish()
                    throw CLIError("no result after \(Int(wait)) s; the task keeps running: dlhub status \(taskID)")
                }
                reply = try await client.request("GET", "/v1/tasks/\(taskID)?wait=5")
            }
            progress.finish()
            try Self.printResult(reply.json, json: options.json)
        }
    }

    /// The largest number of inputs the service takes in one request.
    static let maxInputs = 100_000

    /// `--param key=value` options (values parsed as JSON when they can be).
    static func parameters(_ params: [String]) throws -> [String: JSONValue] {
        var parameters: [String: JSONValue] = [:]
        for p in params {
            guard let eq = p.firstIndex(of: "=") else { throw CLIError("--param takes key=value, not '\(p)'") }
            let value = String(p[p.index(after: eq)...])
            parameters[String(p[..<eq])] = (try? JSONValue.parse(value)) ?? .string(value)
        }
        return parameters
    }

    static func parseJSON(_ text: String, what: String) throws -> JSONValue {
        do { return try JSONValue.parse(text) } catch {
            throw CLIError("\(what) is not valid JSON: \(error). Quote it for the shell, e.g. --input '[[1, 2]]'")
        }
    }

    /// Prints outputs; a failed item makes the exit status non-zero.
    static func printResult(_ reply: JSONValue, json: Bool) throws {
        if json { Output.json(reply); return }
        let task = TaskDocument(json: reply)
        if let error = task.error, task.outputs == nil {
            throw CLIError("the servable failed on this input: \(error)")
        } else if let output = task.output {
            Output.json(output)
        } else if let outputs = task.outputs {
            Output.json(.array(outputs))
            let errors = (task.errors ?? []).enumerated().compactMap { i, e in e.map { "  inputs[\(i)]: \($0)" } }
            if !errors.isEmpty { throw CLIError("\(errors.count) input(s) failed:\n" + errors.joined(separator: "\n")) }
        }
    }

    /// What a waiting request waits for, on stderr: one line rewritten in place on a terminal;
    /// elsewhere (a batch job's log) a plain line each time what it waits for changes.
    struct Progress {
        var shown = false
        var lastState = ""
        let terminal = isatty(2) == 1

        mutating func show(_ reply: JSONValue, since: Date) {
            let task = TaskDocument(json: reply)
            let state = task.waitingFor?.describe(status: task.status) ?? ""
            let line = "waiting \(Int(Date().timeIntervalSince(since))) s" + (state.isEmpty ? "" : ": " + state)
            if terminal {
                FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8))
                shown = true
            } else if state != lastState {
                FileHandle.standardError.write(Data("\(line)\n".utf8))
            }
            lastState = state
        }

        func finish() {
            if shown { FileHandle.standardError.write(Data("\n".utf8)) }
        }
    }
}
