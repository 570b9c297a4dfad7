import ArgumentParser
import DLHubCore
import Foundation

/// `dlhub init`: scaffold a servable directory with a valid servable.json.
struct InitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Write a servable.json for a model directory.",
        discussion: """
            Examples:
              dlhub init --name iris --type sklearn --model model.joblib --input 'ndarray:[null,4]' --output 'ndarray:[null]' \\
                         --title "Iris classifier" --author "Curie, Marie" --domain biology
              dlhub init --name double --type python --module double --function run --input list --output list
              dlhub init --name wc --type executable --command ./wordcount --input string --output integer
            Types for --input/--output: ndarray:[d1,d2,...] (null = any size), list, dict, string, integer, float, boolean, file.
            """)

    @Option(help: "Servable name (letters, digits, '.', '_', '-').") var name: String
    @Option(help: "Title people will see. Default: the name.") var title: String?
    @Option(help: "Loader: \(Loader.allCases.map(\.shortName).joined(separator: ", ")).") var type: String
    @Option(help: "Model file, relative to the directory (sklearn, torch, onnx, keras, tensorflow).") var model: String?
    @Option(help: "Python module defining the function (python).") var module: String?
    @Option(help: "Function name in the module (python).") var function: String?
    @Option(parsing: .upToNextOption, help: "Program and arguments (executable), e.g. --command ./predict --fast.") var command: [String] =
        []
    @Option(help: "Input type, e.g. 'ndarray:[null,4]'.") var input: String
    @Option(help: "Output type, e.g. 'ndarray:[null]'.") var output: String
    @Option(help: "Author as 'Family, Given' (repeatable).") var author: [String] = []
    @Option(help: "Description.") var description: String?
    @Option(help: "Scientific domain (repeatable).") var domain: [String] = []
    @Option(name: .customLong("visible-to"), help: "public, user:<login> or group:<group> (repeatable). Default: public.") var visibleTo:
        [String] = []
    @Option(help: "Extra file to include (repeatable).") var file: [String] = []
    @Option(name: .customLong("requires"), help: "Python requirement as name or name==version (repeatable).") var requires: [String] = []
    @Option(
        help: """
            What the worker runs with: python (an environment the service builds with exactly the --requires packages), \
            modules:NAME[,NAME...] (Lmod modules loaded first), container:/path/image.sif (Apptainer), or default. \
            Default: python when --requires is given, else default.
            """)
    var environment: String?
    @Option(help: "Cores one worker needs.") var cores: Int?
    @Option(help: "Memory one worker needs, e.g. 4G.") var memory: String?
    @Option(help: "Pool (partition) to run on, e.g. bigmem.") var pool: String?
    @Flag(help: "Results may be memoized: same input, same output.") var deterministic = false
    @Option(help: "Directory to write servable.json into.") var dir: String = "."
    @Flag(help: "Overwrite an existing servable.json.") var force = false

    func run() async throws {
        try await CLIError.guarding {
            let doc = try makeDocument()
            _ = try ServableMetadata.validate(doc, files: nil)
            let path = dir + "/servable.json"
            if FileManager.default.fileExists(atPath: path), !force {
                throw CLIError("\(path) exists; pass --force to overwrite it")
            }
            for f in ([model].compactMap { $0 } + file) where !FileManager.default.fileExists(atPath: dir + "/" + f) {
                Output.error("note: \(f) is not in \(dir) yet; it must be there when you publish")
            }
            guard FileManager.default.createFile(atPath: path, contents: Data(doc.encoded(pretty: true))) else {
                throw CLIError("cannot write \(path)")
            }
            print("wrote \(path); publish it with: dlhub publish \(dir)")
        }
    }

    func makeDocument() throws -> JSONValue {
        guard let loader = Loader(shimOrType: type) else {
            throw CLIError("unknown --type '\(type)': use one of \(Loader.allCases.map(\.shortName).joined(separator: ", "))")
        }
        let creators: [JSONValue] = author.map { a in
            let parts = a.split(separator: ",", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2 { return ["creatorName": .string(a), "familyName": .string(parts[0]), "givenName": .string(parts[1])] }
            return ["creatorName": .string(a)]
        }
        var details: [String: JSONValue] = [:]
        switch loader {
        case .pythonFunction:
            guard let module, let function else { throw CLIError("--type python needs --module and --function") }
            details = ["module": .string(module), "method_name": .string(function)]
        case .executable:
            guard !command.isEmpty else { throw CLIError("--type executable needs --command, e.g. --command ./predict") }
            details = ["command": .array(command.map { .string($0) })]
        case .sklearn:
            details = ["method_name": "predict"]
        default:
            break
        }
        var files: [String: JSONValue] = [:]
        if let model { files["model"] = .string(model) }
        if !file.isEmpty { files["other"] = .array(file.map { .string($0) }) }
        var deps: [String: JSONValue] = [:]
        for r in requires {
            let parts = r.components(separatedBy: "==")
            deps[parts[0]] = .string(parts.count > 1 ? parts[1] : "")
        }
        var resources: [String: JSONValue] = [:]
        if let cores { resources["cores"] = .int(Int64(cores)) }
        if let memory { resources["memory"] = .string(memory) }
        if let pool { resources["pool"] = .string(pool) }
        var dlhub: [String: JSONValue] = [
            "name": .string(name), "domains": .array(domain.map { .string($0) }),
            "visible_to": .array((visibleTo.isEmpty ? ["public"] : visibleTo).map { .string($0) }),
            "files": .object(files), "dependencies": ["python": .object(deps)], "type": "servable",
        ]
        if !resources.isEmpty { dlhub["resources"] = .object(resources) }
        dlhub["environment"] = try environmentBlock(hasRequirements: !deps.isEmpty)
        let year = Calendar(identifier: .gregorian).component(.year, from: Date())
        return [
            "datacite": [
                "titles": [["title": .string(title ?? name)]], "creators": .array(creators), "publisher": "DLHub",
                "publicationYear": .string(String(year)), "resourceType": ["resourceTypeGeneral": "InteractiveResource"],
                "descriptions": description.map { [["description": .string($0), "descriptionType": "Abstract"]] } ?? [],
                "identifier": ["identifier": "10.YET/UNASSIGNED", "identifierType": "DOI"],
            ],
            "dlhub": .object(dlhub),
            "servable": [
                "type": .string(loader.sdkTypeName), "shim": .string(loader.rawValue),
                "methods": [
                    "run": [
                        "input": try Self.typeBlock(input), "output": try Self.typeBlock(output),
                        "parameters": [:], "method_details": .object(details),
                    ]
                ],
                "deterministic": .bool(deterministic),
            ],
        ]
    }

    /// `dlhub.environment` from `--environment`.
    func environmentBlock(hasRequirements: Bool) throws -> JSONValue {
        let text = environment ?? (hasRequirements ? "python" : "default")
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        switch (parts.first ?? "", parts.count) {
        case ("default", 1): return ["type": "default"]
        case ("python", 1):
            guard hasRequirements else { throw CLIError("--environment python needs the packages: --requires scikit-learn==1.5.2 ...") }
            return ["type": "python"]
        case ("modules", 2):
            return ["type": "modules", "modules": .array(parts[1].split(separator: ",").map { .string(String($0)) })]
        case ("container", 2): return ["type": "container", "image": .string(parts[1])]
        default:
            throw CLIError("--environment '\(text)': use python, modules:NAME[,NAME], container:/path/image.sif or default")
        }
    }

    /// `ndarray:[null,4]`, `list`, `string`... as a DLHub type block.
    static func typeBlock(_ spec: String) throws -> JSONValue {
        let parts = spec.split(separator: ":", maxSplits: 1).map(String.init)
        var block: [String: JSONValue] = ["type": .string(parts[0]), "description": .string(spec)]
        if parts.count == 2 {
            guard parts[0] == "ndarray", let shape = try? JSONValue.parse(parts[1]), shape.arrayValue != nil else {
                throw CLIError("type '\(spec)': only ndarray takes a shape, written as ndarray:[null,4]")
            }
            block["shape"] = shape
        }
        var issues: [ValidationIssue] = []
        if DataType.parse(.object(block), path: spec, issues: &issues) == nil {
            throw CLIError(issues.map(\.message).joined(separator: "; "))
        }
        return .object(block)
    }
}
