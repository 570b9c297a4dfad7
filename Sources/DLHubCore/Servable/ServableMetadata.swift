/// A validated `servable.json`: DLHub's three blocks (`datacite`, `dlhub`, `servable`) and the
/// typed fields the system uses, with the original document kept whole.
public struct ServableMetadata: Sendable, Hashable {
    public var document: JSONValue

    public var name: String
    public var title: String
    public var description: String
    public var creators: [String]
    public var domains: [String]
    public var visibleTo: [Principal]
    /// Relative paths of every file named in `dlhub.files`, keyed as declared (`model`, `other[0]`).
    public var files: [String: String]
    public var pythonDependencies: [String: String]
    /// What the worker runs with: the pool's default, a built Python environment, modules, a container.
    public var environment: ServableEnvironment
    public var loader: Loader
    public var input: DataType
    public var output: DataType
    public var parameters: JSONValue
    public var methodDetails: JSONValue
    public var resources: Resources
    public var batching: Batching
    public var deterministic: Bool
    /// Seconds one batch may take in a worker before it is killed and its items failed.
    public var timeoutSeconds: Double

    // Set by the registry at publication.
    public var owner: String? { document["dlhub"]?["owner"]?.stringValue }
    public var version: Int? { document["dlhub"]?["version"]?.intValue.map(Int.init) }
    public var identifier: String? { document["dlhub"]?["identifier"]?.stringValue }
    public var publicationDate: String? { document["dlhub"]?["publication_date"]?.stringValue }

    public struct Resources: Sendable, Hashable {
        public var cores: Int = 1
        public var memoryMB: Int = 0
        public var gpus: Int = 0
        /// A pool name, when the servable asks for one by name.
        public var pool: String?
        public init() {}
    }

    public struct Batching: Sendable, Hashable {
        /// The default for models whose leading dimension is free (scikit-learn, ONNX, TorchScript,
        /// Keras), which the worker calls once per batch; other servables default to 64.
        public static let rowModelDefault = 1024
        public var maxBatchSize: Int = 64
        /// Whether the worker may call a model once for a whole batch (rows concatenated).
        public var vectorize = true
        public init() {}
    }
}

extension ServableMetadata {
    /// Validates a document; `files` are the relative paths present in the upload, when known.
    ///
    /// Throws one `DLHubError(.invalidMetadata)` listing every problem with its field path. Never
    /// traps, whatever the document holds (it comes from any user; see the fuzz targets).
    public static func validate(_ doc: JSONValue, files available: Set<String>? = nil) throws(DLHubError) -> ServableMetadata {
        guard doc.objectValue != nil else {
            throw DLHubError(.invalidMetadata, "servable.json must be a JSON object with datacite, dlhub and servable blocks")
        }
        var issues: [ValidationIssue] = []
        for block in ["datacite", "dlhub", "servable"] where doc[block]?.objectValue == nil {
            issues.append(ValidationIssue(block, doc[block] == nil ? "is missing" : "must be an object"))
        }
        guard issues.isEmpty, let datacite = doc["datacite"], let dlhubBlock = doc["dlhub"], let servableBlock = doc["servable"] else {
            throw invalid(issues)
        }
        let citation = Citation(datacite, issues: &issues)
        let dlhub = try Publication(dlhubBlock, servable: servableBlock, available: available, issues: &issues)
        let serving = Serving(servableBlock, files: dlhub.files, issues: &issues)
        if !issues.isEmpty { throw invalid(issues) }
        guard let input = serving.input, let output = serving.output else { throw invalid(issues) }
        return ServableMetadata(
            document: doc, name: dlhub.name, title: citation.title, description: citation.description, creators: citation.creators,
            domains: dlhub.domains, visibleTo: dlhub.visibleTo, files: dlhub.files, pythonDependencies: dlhub.dependencies,
            environment: dlhub.environment, loader: serving.loader, input: input, output: output, parameters: serving.parameters,
            methodDetails: serving.details, resources: dlhub.resources, batching: serving.batching, deterministic: serving.deterministic,
            timeoutSeconds: serving.timeout)
    }

    /// The `datacite` block: what a citation needs.
    struct Citation {
        var title = ""
        var creators: [String] = []
        var description = ""

        init(_ datacite: JSONValue, issues: inout [ValidationIssue]) {
            if let titles = datacite["titles"]?.arrayValue, let first = titles.first?["title"]?.stringValue, !first.isEmpty {
                title = first
            } else {
                issues.append(ValidationIssue("datacite.titles", "needs at least one {\"title\": \"...\"}"))
            }
            if let list = datacite["creators"] {
                if let items = list.arrayValue {
                    for (i, c) in items.enumerated() {
                        if let n = c["creatorName"]?.stringValue ?? c["name"]?.stringValue {
                            creators.append(n)
                        } else if let family = c["familyName"]?.stringValue {
                            creators.append([c["givenName"]?.stringValue, family].compactMap { $0 }.joined(separator: " "))
                        } else {
                            issues.append(ValidationIssue("datacite.creators[\(i)]", "needs creatorName, or givenName and familyName"))
                        }
                    }
                } else {
                    issues.append(ValidationIssue("datacite.creators", "must be a list of creators"))
                }
            }
            description = datacite["descriptions"]?.arrayValue?.compactMap { $0["description"]?.stringValue }.joined(separator: "\n") ?? ""
        }
    }

    /// The `dlhub` block: name, visibility, files, dependencies, environment, resources.
    struct Publication {
        var name = ""
        var domains: [String] = []
        var visibleTo: [Principal] = [.everyone]
        var files: [String: String] = [:]
        var dependencies: [String: String] = [:]
        var environment = ServableEnvironment()
        var resources = Resources()

        init(_ dlhub: JSONValue, servable: JSONValue, available: Set<String>?, issues: inout [ValidationIssue]) throws(DLHubError) {
            name = dlhub["name"]?.stringValue ?? ""
            if dlhub["name"] == nil {
                issues.append(ValidationIssue("dlhub.name", "is missing"))
            } else if let p = ServableName.problem(with: name) {
                issues.append(ValidationIssue("dlhub.name", p))
            }
            domains = stringList(dlhub["domains"], path: "dlhub.domains", issues: &issues)
            if let v = dlhub["visible_to"] {
                visibleTo = []
                for (i, s) in stringList(v, path: "dlhub.visible_to", issues: &issues).enumerated() {
                    if let p = Principal(parsing: s) {
                        visibleTo.append(p)
                    } else if s.hasPrefix("urn:globus:") {
                        // What DLHub's SDK writes for set_visibility(users=..., groups=...).
                        issues.append(
                            ValidationIssue(
                                "dlhub.visible_to[\(i)]",
                                "'\(s.prefix(100))' is a Globus identity (DLHub's SDK writes these); this cluster knows Unix users and groups: use public, user:<login> or group:<unix group> instead"
                            ))
                    } else {
                        issues.append(
                            ValidationIssue("dlhub.visible_to[\(i)]", "'\(s.prefix(100))' is not public, user:<login> or group:<group>"))
                    }
                }
            }
            if let f = dlhub["files"], !f.isNull {
                guard let members = f.objectValue else {
                    throw invalid(issues + [ValidationIssue("dlhub.files", "must be an object such as {\"model\": \"model.joblib\"}")])
                }
                for (key, value) in members {
                    let paths: [(String, JSONValue)] =
                        value.arrayValue.map { $0.enumerated().map { ("\(key)[\($0.offset)]", $0.element) } } ?? [(key, value)]
                    for (k, p) in paths {
                        guard let path = p.stringValue else {
                            issues.append(ValidationIssue("dlhub.files.\(k)", "must be a path string"))
                            continue
                        }
                        // DLHub's SDK records absolute paths on the author's machine; the upload holds the file by name.
                        let relative = path.hasPrefix("/") ? String(path.split(separator: "/").last ?? "") : path
                        if let problem = ServablePath.problem(with: relative) {
                            issues.append(ValidationIssue("dlhub.files.\(k)", problem))
                        } else if let available, !available.contains(ServablePath.normalize(relative)) {
                            issues.append(ValidationIssue("dlhub.files.\(k)", "'\(relative.prefix(200))' is not in the uploaded directory"))
                        } else {
                            files[k] = ServablePath.normalize(relative)
                        }
                    }
                }
            }
            for source in [dlhub["dependencies"]?["python"], servable["dependencies"]?["python"]] {
                for (k, v) in source?.objectValue ?? [:] { dependencies[k] = v.stringValue ?? "" }
            }
            environment = ServableEnvironment.parse(dlhub["environment"], dependencies: dependencies, issues: &issues)
            if let r = dlhub["resources"] { resources = Self.resources(r, issues: &issues) }
        }

        static func resources(_ r: JSONValue, issues: inout [ValidationIssue]) -> Resources {
            var resources = Resources()
            if let c = r["cores"] {
                if let n = c.intValue, (1...4096).contains(n) {
                    resources.cores = Int(n)
                } else {
                    issues.append(ValidationIssue("dlhub.resources.cores", "must be a whole number from 1 to 4096"))
                }
            }
            if let g = r["gpus"] {
                if let n = g.intValue, (0...64).contains(n) {
                    resources.gpus = Int(n)
                } else {
                    issues.append(ValidationIssue("dlhub.resources.gpus", "must be a whole number from 0 to 64"))
                }
            }
            if let m = r["memory"] {
                if let mb = parseMemory(m) {
                    resources.memoryMB = mb
                } else {
                    issues.append(
                        ValidationIssue("dlhub.resources.memory", "must be megabytes or a size such as \"4G\" or \"512M\", at most 1P"))
                }
            }
            if let p = r["pool"] ?? r["partition"] {
                if let s = p.stringValue, !s.isEmpty, s.utf8.count <= 255 {
                    resources.pool = s
                } else {
                    issues.append(ValidationIssue("dlhub.resources.pool", "must be a pool name"))
                }
            }
            return resources
        }
    }

    /// The `servable` block: the loader, its method and how it is served.
    struct Serving {
        var loader = Loader.pythonFunction
        var input: DataType?
        var output: DataType?
        var details: JSONValue = .object([:])
        var parameters: JSONValue = .object([:])
        var batching = Batching()
        var deterministic = false
        var timeout = 60.0

        init(_ servable: JSONValue, files: [String: String], issues: inout [ValidationIssue]) {
            let shim = servable["shim"]?.stringValue ?? servable["type"]?.stringValue
            if let shim {
                if let l = Loader(shimOrType: shim) {
                    loader = l
                } else {
                    let known = Loader.allCases.map(\.shortName).joined(separator: ", ")
                    issues.append(
                        ValidationIssue(
                            servable["shim"] != nil ? "servable.shim" : "servable.type",
                            "unknown loader type '\(shim.prefix(100))': use one of \(known)"))
                }
            } else {
                issues.append(
                    ValidationIssue("servable.shim", "is missing: name the loader (e.g. \"sklearn.ScikitLearnServable\" or \"executable\")")
                )
            }
            let run = servable["methods"]?["run"]
            if run?.objectValue == nil {
                issues.append(ValidationIssue("servable.methods.run", "is missing: it declares input, output and method_details"))
            }
            input = DataType.parse(run?["input"], path: "servable.methods.run.input", issues: &issues)
            output = DataType.parse(run?["output"], path: "servable.methods.run.output", issues: &issues)
            details = run?["method_details"] ?? .object([:])
            parameters = run?["parameters"] ?? .object([:])
            if parameters.objectValue == nil {
                issues.append(ValidationIssue("servable.methods.run.parameters", "must be an object of default keyword arguments"))
            }
            if shim != nil, issues.allSatisfy({ !$0.path.hasPrefix("servable.shim") && !$0.path.hasPrefix("servable.type") }) {
                checkMethod(files: files, issues: &issues)
            }
            if let b = servable["batching"] {
                if let n = b["max_batch_size"] {
                    if let v = n.intValue, v >= 1, v <= 100_000 {
                        batching.maxBatchSize = Int(v)
                    } else {
                        issues.append(ValidationIssue("servable.batching.max_batch_size", "must be a whole number from 1 to 100000"))
                    }
                }
                // DLHub's servable.json carries a batching delay; here a batch never waits for
                // inputs to fill it (docs/worker-protocol.md), so the field is checked and kept in
                // the description but means nothing.
                if let d = b["max_delay_ms"], d.intValue.map({ (0...60_000).contains($0) }) != true {
                    issues.append(ValidationIssue("servable.batching.max_delay_ms", "must be milliseconds from 0 to 60000"))
                }
                if let v = b["vectorize"] {
                    if let on = v.boolValue {
                        batching.vectorize = on
                    } else {
                        issues.append(ValidationIssue("servable.batching.vectorize", "must be true or false"))
                    }
                }
            }
            // A model called once per batch costs little more for 1,000 rows than for 64: its
            // batches may be larger unless the servable says otherwise.
            if servable["batching"]?["max_batch_size"] == nil, batching.vectorize, loader.takesRowBatches {
                batching.maxBatchSize = Batching.rowModelDefault
            }
            if let d = servable["deterministic"] {
                if let b = d.boolValue {
                    deterministic = b
                } else {
                    issues.append(ValidationIssue("servable.deterministic", "must be true or false"))
                }
            }
            if let t = servable["timeout"] {
                if let v = t.doubleValue, v > 0, v <= 86_400 {
                    timeout = v
                } else {
                    issues.append(ValidationIssue("servable.timeout", "must be seconds, more than 0 and at most 86400"))
                }
            }
        }

        /// What each loader needs in `method_details` and `files`.
        func checkMethod(files: [String: String], issues: inout [ValidationIssue]) {
            switch loader {
            case .pythonFunction:
                if details["module"]?.stringValue == nil {
                    issues.append(
                        ValidationIssue(
                            "servable.methods.run.method_details.module", "is missing: the Python module that defines the function"))
                }
                if details["method_name"]?.stringValue == nil {
                    issues.append(ValidationIssue("servable.methods.run.method_details.method_name", "is missing: the function's name"))
                }
            case .executable:
                if let cmd = details["command"]?.arrayValue, !cmd.isEmpty, cmd.allSatisfy({ $0.stringValue != nil }) {
                } else {
                    issues.append(
                        ValidationIssue(
                            "servable.methods.run.method_details.command", "is missing: the program and its arguments, e.g. [\"./predict\"]"
                        ))
                }
            default:
                if loader.needsModelFile, files["model"] == nil, !issues.contains(where: { $0.path.hasPrefix("dlhub.files") }) {
                    issues.append(ValidationIssue("dlhub.files.model", "is missing: a \(loader.shortName) servable names its model file"))
                }
            }
        }
    }

    static func invalid(_ issues: [ValidationIssue]) -> DLHubError {
        let sorted = issues.sorted { $0.path < $1.path }
        let list = sorted.map(\.description).joined(separator: "; ")
        return DLHubError(.invalidMetadata, "servable.json is not valid: \(list)", details: sorted)
    }

    static func stringList(_ v: JSONValue?, path: String, issues: inout [ValidationIssue]) -> [String] {
        guard let v, !v.isNull else { return [] }
        if let s = v.stringValue { return [s] }
        guard let items = v.arrayValue else {
            issues.append(ValidationIssue(path, "must be a list of strings"))
            return []
        }
        var out: [String] = []
        for (i, item) in items.enumerated() {
            if let s = item.stringValue { out.append(s) } else { issues.append(ValidationIssue("\(path)[\(i)]", "must be a string")) }
        }
        return out
    }

    /// Megabytes from a number (MB) or a string such as "512M", "4G", "1T".
    public static func parseMemory(_ v: JSONValue) -> Int? {
        if let n = v.intValue { return n >= 0 && n <= 1_073_741_824 ? Int(n) : nil }
        guard var s = v.stringValue?.uppercased(), !s.isEmpty else { return nil }
        if s.hasSuffix("B") { s.removeLast() }
        let factor: Double
        switch s.last {
        case "K": factor = 1.0 / 1024; s.removeLast()
        case "M": factor = 1; s.removeLast()
        case "G": factor = 1024; s.removeLast()
        case "T": factor = 1024 * 1024; s.removeLast()
        case "P": factor = 1024 * 1024 * 1024; s.removeLast()
        default: factor = 1
        }
        // At most a petabyte: beyond, the number is nonsense (and must not trap when converted).
        guard let n = Double(s), n >= 0, (n * factor).isFinite, n * factor <= 1_073_741_824 else { return nil }
        return Int((n * factor).rounded(.up))
    }

    /// The document with the fields the registry adds at publication.
    public func published(owner: String, version: Int, identifier: String?, date: String) -> JSONValue {
        var doc = document
        if let sdk = doc["dlhub"]?["version"], sdk.stringValue != nil {
            doc = doc.setting(["dlhub", "sdk_version"], to: sdk)
        }
        doc = doc.setting(["dlhub", "owner"], to: .string(owner))
        doc = doc.setting(["dlhub", "version"], to: .int(Int64(version)))
        doc = doc.setting(["dlhub", "publication_date"], to: .string(date))
        // The loader as resolved here, once, under the name every worker knows: a servable that
        // says only `"type": "sklearn"` (or an older SDK spelling) used to publish and then fail
        // at load, since the Python worker reads `shim` and knows only these names.
        doc = doc.setting(["servable", "shim"], to: .string(loader.rawValue))
        var fileBlock: [String: JSONValue] = [:]
        for (key, path) in files.sorted(by: { $0.key < $1.key }) {
            if let bracket = key.firstIndex(of: "[") {
                // Keep list-valued entries (`other[0]`, `other[1]`) as lists.
                let base = String(key[..<bracket])
                fileBlock[base] = .array((fileBlock[base]?.arrayValue ?? []) + [.string(path)])
            } else {
                fileBlock[key] = .string(path)
            }
        }
        doc = doc.setting(["dlhub", "files"], to: .object(fileBlock))
        if let identifier { doc = doc.setting(["dlhub", "identifier"], to: .string(identifier)) }
        return doc
    }
}
