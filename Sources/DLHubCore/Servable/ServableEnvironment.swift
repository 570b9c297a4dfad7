/// What a servable's worker runs with (`dlhub.environment`), validated.
///
/// Forms of `dlhub.environment`:
/// - absent: a Python environment built from `dependencies.python` when it declares any, else
///   the pool's default environment;
/// - `{"type": "python"}`: a Python environment with exactly the declared dependencies;
/// - `{"type": "modules", "modules": ["gcc/12", "tool/1.0"]}`: Lmod modules loaded before the
///   worker starts, with the pool's default interpreter (`modules` may also accompany `python`);
/// - `{"type": "container", "image": "/path/image.sif"}`: an Apptainer/Singularity image (a `.sif`
///   file or a sandbox directory) with its own `python3`;
/// - `{"type": "default"}` or `"default"`: the pool's default environment.
public struct ServableEnvironment: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable {
        case poolDefault = "default"
        case python, modules, container
    }

    public var kind: Kind
    /// The packages a `python` environment holds (from `dependencies.python`).
    public var requirements: PythonRequirements
    public var modules: [String]
    public var image: String?

    public init(
        kind: Kind = .poolDefault, requirements: PythonRequirements = PythonRequirements(), modules: [String] = [], image: String? = nil
    ) {
        self.kind = kind
        self.requirements = requirements
        self.modules = modules
        self.image = image
    }

    /// Parses `dlhub.environment` given the declared Python dependencies.
    static func parse(
        _ value: JSONValue?, dependencies: [String: String], issues: inout [ValidationIssue]
    ) -> ServableEnvironment {
        let requirements = PythonRequirements.parse(dependencies, path: "dlhub.dependencies.python", issues: &issues)
        guard let value, !value.isNull else {
            return ServableEnvironment(kind: requirements.isEmpty ? .poolDefault : .python, requirements: requirements)
        }
        let path = "dlhub.environment"
        let typeName = value.stringValue ?? value["type"]?.stringValue
        guard let typeName, let kind = Kind(rawValue: typeName) else {
            issues.append(ValidationIssue(path, "must name a type: default, python, modules or container"))
            return ServableEnvironment()
        }
        var environment = ServableEnvironment(kind: kind, requirements: requirements)
        if let list = value["modules"] {
            guard let names = list.arrayValue?.compactMap(\.stringValue), names.count == list.arrayValue?.count, names.count <= 32 else {
                issues.append(ValidationIssue(path + ".modules", "must be a list of up to 32 module names such as \"gcc/12.2\""))
                return environment
            }
            for (i, name) in names.enumerated() where !Self.isModuleName(name) {
                issues.append(ValidationIssue("\(path).modules[\(i)]", "'\(name)' is not a module name (letters, digits, . _ + - and /)"))
            }
            environment.modules = names
        }
        switch kind {
        case .python where requirements.isEmpty:
            issues.append(ValidationIssue(path, "type python needs the packages in dlhub.dependencies.python"))
        case .modules where environment.modules.isEmpty:
            issues.append(ValidationIssue(path + ".modules", "type modules needs at least one module to load"))
        case .container:
            guard let image = value["image"]?.stringValue, image.hasPrefix("/"), !image.contains("\0"), image.utf8.count <= 4096,
                !image.split(separator: "/").contains("..")
            else {
                issues.append(
                    ValidationIssue(path + ".image", "must be the absolute path of an Apptainer image (.sif) or sandbox directory"))
                return environment
            }
            environment.image = image
            if !environment.modules.isEmpty {
                issues.append(ValidationIssue(path + ".modules", "a container brings its own software; modules cannot be loaded into it"))
            }
        case .poolDefault where !environment.modules.isEmpty:
            environment.kind = .modules
        default:
            break
        }
        return environment
    }

    static func isModuleName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 200, name.first != "-", name.first != "/", !name.split(separator: "/").contains("..")
        else { return false }
        return name.unicodeScalars.allSatisfy { PythonRequirements.isAlphanumeric($0) || "._+-/".unicodeScalars.contains($0) }
    }
}

/// A set of Python requirements, each a package name and a version specifier, in a canonical
/// order: the same set always reads (and hashes) the same.
public struct PythonRequirements: Sendable, Hashable {
    public struct Requirement: Sendable, Hashable {
        /// The normalized name (PEP 503: lowercase, runs of `-_.` become `-`).
        public var name: String
        /// `""` for any version, else a PEP 440 specifier such as `==1.5.2` or `>=1.4,<2`.
        public var specifier: String

        public init(name: String, specifier: String) {
            self.name = name
            self.specifier = specifier
        }

        /// What an installer takes: `scikit-learn==1.5.2`.
        public var installArgument: String { name + specifier }
    }

    public private(set) var requirements: [Requirement] = []

    public init(_ requirements: [Requirement] = []) {
        self.requirements = requirements.sorted { $0.name < $1.name }
    }

    public var isEmpty: Bool { requirements.isEmpty }

    /// Canonical JSON of the set, for content addressing.
    public var canonical: JSONValue { .array(requirements.map { .array([.string($0.name), .string($0.specifier)]) }) }

    /// Parses `{"scikit-learn": "1.5.2", "numpy": ""}` as DLHub's SDK writes it: a bare version
    /// means exactly that version; "", "*" and "latest" mean any.
    static func parse(_ declared: [String: String], path: String, issues: inout [ValidationIssue]) -> PythonRequirements {
        var out: [String: Requirement] = [:]
        if declared.count > 200 { issues.append(ValidationIssue(path, "declares \(declared.count) packages; at most 200")) }
        for (rawName, rawVersion) in declared.sorted(by: { $0.key < $1.key }) {
            guard let name = normalize(rawName) else {
                issues.append(ValidationIssue("\(path).\(rawName.prefix(80))", "is not a Python package name"))
                continue
            }
            guard let specifier = specifier(rawVersion) else {
                issues.append(
                    ValidationIssue(
                        "\(path).\(name)",
                        "'\(rawVersion.prefix(80))' is not a version such as \"1.5.2\" or a specifier such as \">=1.4,<2\""))
                continue
            }
            if out[name] != nil { issues.append(ValidationIssue("\(path).\(rawName)", "names \(name) twice")) }
            out[name] = Requirement(name: name, specifier: specifier)
        }
        return PythonRequirements(Array(out.values))
    }

    /// PEP 503 normalization of a PEP 508 name; nil when it is not one.
    static func normalize(_ name: String) -> String? {
        let scalars = Array(name.unicodeScalars)
        guard !scalars.isEmpty, scalars.count <= 100, isAlphanumeric(scalars.first!), isAlphanumeric(scalars.last!),
            scalars.allSatisfy({ isAlphanumeric($0) || $0 == "-" || $0 == "_" || $0 == "." })
        else { return nil }
        var out = ""
        var lastWasSeparator = false
        for s in name.lowercased().unicodeScalars {
            if s == "-" || s == "_" || s == "." {
                if !lastWasSeparator { out.append("-") }
                lastWasSeparator = true
            } else {
                out.unicodeScalars.append(s)
                lastWasSeparator = false
            }
        }
        return out
    }

    /// A PEP 440 specifier from what a servable declares; nil when it is not one.
    static func specifier(_ raw: String) -> String? {
        let text = raw.filter { $0 != " " }
        if text.isEmpty || text == "*" || text.lowercased() == "latest" { return "" }
        guard text.utf8.count <= 200 else { return nil }
        if let first = text.unicodeScalars.first, ("0"..."9").contains(first) {
            return isVersion(text) ? "==" + text : nil
        }
        for clause in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard let op = ["===", "==", ">=", "<=", "~=", "!=", "<", ">"].first(where: { clause.hasPrefix($0) }) else { return nil }
            var version = clause.dropFirst(op.count)
            if op == "==" || op == "!=", version.hasSuffix(".*") { version = version.dropLast(2) }
            guard isVersion(String(version)) else { return nil }
        }
        return text
    }

    static func isVersion(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, ("0"..."9").contains(first) else { return false }
        return text.unicodeScalars.allSatisfy { isAlphanumeric($0) || $0 == "." || $0 == "+" || $0 == "!" || $0 == "-" || $0 == "_" }
    }

    static func isAlphanumeric(_ s: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(s) || ("A"..."Z").contains(s) || ("0"..."9").contains(s)
    }
}
