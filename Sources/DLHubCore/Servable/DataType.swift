/// A type block in DLHub's vocabulary, as `servable.methods.run.input` and `.output` declare it.
///
/// `ndarray` carries a `shape` where `null` is a free dimension; `list` an `item_type`; `tuple`
/// its `element_types`; `dict` its `properties`. `python object`, `file` and `unknown` are
/// accepted as declared and not checked further.
public indirect enum DataType: Sendable, Hashable, CustomStringConvertible {
    case ndarray(shape: [Int?]?, item: DataType?)
    case list(item: DataType?)
    case tuple([DataType])
    case dict(properties: [String: DataType])
    case string
    case integer
    case float
    case boolean
    case file
    case pythonObject(String?)
    case unknown

    public static let knownTypeNames = [
        "ndarray", "list", "tuple", "dict", "string", "integer", "int", "float", "number", "boolean", "bool",
        "file", "python object", "unknown",
    ]

    /// Parses a type block, appending any problem to `issues` under `path`.
    public static func parse(_ json: JSONValue?, path: String, issues: inout [ValidationIssue]) -> DataType? {
        guard let json else {
            issues.append(ValidationIssue(path, "is missing: declare the type, e.g. {\"type\": \"ndarray\", \"shape\": [null, 4]}"))
            return nil
        }
        if let name = json.stringValue { return parse(["type": .string(name)], path: path, issues: &issues) }
        guard json.objectValue != nil else {
            issues.append(ValidationIssue(path, "must be an object with a \"type\", not \(json.typeName)"))
            return nil
        }
        guard let type = json["type"]?.stringValue else {
            issues.append(ValidationIssue("\(path).type", "is missing: one of \(knownTypeNames.joined(separator: ", "))"))
            return nil
        }
        switch type {
        case "ndarray":
            var shape: [Int?]?
            if let s = json["shape"], !s.isNull {
                guard let dims = s.arrayValue else {
                    issues.append(ValidationIssue("\(path).shape", "must be a list of sizes, with null for a free dimension"))
                    return nil
                }
                var out: [Int?] = []
                for (i, d) in dims.enumerated() {
                    if d.isNull {
                        out.append(nil)
                    } else if let n = d.intValue, n >= 0 {
                        out.append(Int(n))
                    } else {
                        issues.append(ValidationIssue("\(path).shape[\(i)]", "must be a non-negative integer or null"))
                        return nil
                    }
                }
                shape = out
            }
            let item = json["item_type"].flatMap { parse($0, path: "\(path).item_type", issues: &issues) }
            return .ndarray(shape: shape, item: item)
        case "list":
            let item = json["item_type"].flatMap { parse($0, path: "\(path).item_type", issues: &issues) }
            return .list(item: item)
        case "tuple":
            guard let elements = json["element_types"]?.arrayValue else {
                issues.append(ValidationIssue("\(path).element_types", "is missing: a tuple lists the type of each element"))
                return nil
            }
            var types: [DataType] = []
            for (i, e) in elements.enumerated() {
                guard let t = parse(e, path: "\(path).element_types[\(i)]", issues: &issues) else { return nil }
                types.append(t)
            }
            return .tuple(types)
        case "dict":
            var props: [String: DataType] = [:]
            for (k, v) in json["properties"]?.objectValue ?? [:] {
                guard let t = parse(v, path: "\(path).properties.\(k)", issues: &issues) else { return nil }
                props[k] = t
            }
            return .dict(properties: props)
        case "string": return .string
        case "integer", "int": return .integer
        case "float", "number": return .float
        case "boolean", "bool": return .boolean
        case "file": return .file
        case "python object": return .pythonObject(json["python_type"]?.stringValue)
        case "unknown": return .unknown
        default:
            issues.append(ValidationIssue("\(path).type", "unknown type '\(type)': use one of \(knownTypeNames.joined(separator: ", "))"))
            return nil
        }
    }

    public var description: String {
        switch self {
        case .ndarray(let shape, let item):
            let dims = shape.map { "[" + $0.map { $0.map(String.init) ?? "null" }.joined(separator: ", ") + "]" } ?? "any shape"
            return "ndarray \(dims)" + (item.map { " of \($0)" } ?? "")
        case .list(let item): return "list" + (item.map { " of \($0)" } ?? "")
        case .tuple(let t): return "tuple (" + t.map(\.description).joined(separator: ", ") + ")"
        case .dict: return "dict"
        case .string: return "string"
        case .integer: return "integer"
        case .float: return "float"
        case .boolean: return "boolean"
        case .file: return "file"
        case .pythonObject(let t): return "python object" + (t.map { " (\($0))" } ?? "")
        case .unknown: return "unknown"
        }
    }

    /// Words for the search index: the type names and shapes a scientist might search for.
    public var searchTerms: [String] {
        switch self {
        case .ndarray(let shape, let item):
            return ["ndarray", "array"] + (shape.map { ["\($0.count)d"] } ?? []) + (item?.searchTerms ?? [])
        case .list(let item): return ["list"] + (item?.searchTerms ?? [])
        case .tuple(let t): return ["tuple"] + t.flatMap(\.searchTerms)
        case .dict(let p): return ["dict"] + p.keys.sorted()
        case .pythonObject(let t): return ["python", "object"] + (t.map { [$0] } ?? [])
        default: return [description]
        }
    }
}

extension DataType {
    /// Checks that `value` fits this type; returns the first problem, naming where it is.
    ///
    /// Used before a request is queued, so that a wrong shape is a 400 for the caller and never
    /// reaches a worker.
    public func check(_ value: JSONValue, at path: String = "input") -> String? {
        // The common case first, without building a path string per element; the message is
        // worked out only for an input that does not conform.
        if case .ndarray(let shape?, let item) = self, conforms(value, shape: shape[...], item: item) { return nil }
        return explain(value, at: path)
    }

    /// `check` on the JSON value at `range` of `bytes` (one well-formed value, as `JSONScanner`
    /// found it). An array of a declared shape, what row models take, is checked on the bytes
    /// without building it; other types, and an input that does not conform (for the message),
    /// are parsed first.
    public func check(_ bytes: [UInt8], _ range: Range<Int>, at path: String = "input") -> String? {
        if case .ndarray(let shape?, nil) = self, Self.conforms(bytes, range, shape: shape[...]) { return nil }
        guard let value = try? JSONValue.parse(bytes[range]) else { return "\(path): not a JSON value" }
        return check(value, at: path)
    }

    private static func conforms(_ bytes: [UInt8], _ range: Range<Int>, shape: ArraySlice<Int?>) -> Bool {
        guard !range.isEmpty else { return false }
        guard let dim = shape.first else {
            // A scalar: a number, a string or a boolean (`isScalar`).
            switch bytes[range.lowerBound] {
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "\""), UInt8(ascii: "t"), UInt8(ascii: "f"):
                return true
            default: return false
            }
        }
        guard bytes[range.lowerBound] == UInt8(ascii: "["), let elements = JSONScanner.arrayElements(bytes, in: range) else { return false }
        if let size = dim, elements.count != size { return false }
        let rest = shape.dropFirst()
        for element in elements where !conforms(bytes, element, shape: rest) { return false }
        return true
    }

    private func conforms(_ value: JSONValue, shape: ArraySlice<Int?>, item: DataType?) -> Bool {
        guard let dim = shape.first else {
            if value.arrayValue != nil { return false }
            if let item { return item.check(value, at: "") == nil }
            return isScalar(value)
        }
        guard let items = value.arrayValue else { return false }
        if let size = dim, items.count != size { return false }
        let rest = shape.dropFirst()
        for v in items where !conforms(v, shape: rest, item: item) { return false }
        return true
    }

    private func explain(_ value: JSONValue, at path: String) -> String? {
        switch self {
        case .ndarray(let shape, let item):
            if let shape { return checkArray(value, shape: shape[...], item: item, path: path) }
            if value.arrayValue == nil, !isScalar(value) { return "\(path): expected an array, got \(value.typeName)" }
            return nil
        case .list(let item):
            guard let items = value.arrayValue else { return "\(path): expected a list, got \(value.typeName)" }
            if let item {
                for (i, v) in items.enumerated() { if let p = item.check(v, at: "\(path)[\(i)]") { return p } }
            }
            return nil
        case .tuple(let types):
            guard let items = value.arrayValue else { return "\(path): expected a tuple (a JSON array), got \(value.typeName)" }
            guard items.count == types.count else { return "\(path): expected \(types.count) elements, got \(items.count)" }
            for (i, (t, v)) in zip(types, items).enumerated() { if let p = t.check(v, at: "\(path)[\(i)]") { return p } }
            return nil
        case .dict(let props):
            guard let members = value.objectValue else { return "\(path): expected an object, got \(value.typeName)" }
            for (k, t) in props.sorted(by: { $0.key < $1.key }) {
                // By its bytes, as a worker's language compares keys (not by Swift's canonical
                // equivalence, which takes the Kelvin sign for K).
                guard let v = members.first(where: { $0.key.utf8.elementsEqual(k.utf8) })?.value else {
                    return "\(path): missing key '\(k)'"
                }
                if let p = t.check(v, at: "\(path).\(k)") { return p }
            }
            return nil
        case .string:
            return value.stringValue == nil ? "\(path): expected a string, got \(value.typeName)" : nil
        case .integer:
            if case .int = value { return nil }
            return "\(path): expected an integer, got \(value.typeName)"
        case .float:
            return value.doubleValue == nil ? "\(path): expected a number, got \(value.typeName)" : nil
        case .boolean:
            return value.boolValue == nil ? "\(path): expected true or false, got \(value.typeName)" : nil
        case .file, .pythonObject, .unknown:
            return nil
        }
    }

    private func isScalar(_ v: JSONValue) -> Bool {
        switch v {
        case .int, .double, .bool, .string: return true
        default: return false
        }
    }

    private func checkArray(_ value: JSONValue, shape: ArraySlice<Int?>, item: DataType?, path: String) -> String? {
        guard let dim = shape.first else {
            if value.arrayValue != nil { return "\(path): expected a single value, got an array (too many dimensions)" }
            if let item { return item.check(value, at: path) }
            return isScalar(value) ? nil : "\(path): expected a number, string or boolean, got \(value.typeName)"
        }
        guard let items = value.arrayValue else {
            return "\(path): expected an array of \(shape.count) dimension(s), got \(value.typeName)"
        }
        if let size = dim, items.count != size {
            return "\(path): expected \(size) element(s) in this dimension, got \(items.count)"
        }
        for (i, v) in items.enumerated() {
            if let p = checkArray(v, shape: shape.dropFirst(), item: item, path: "\(path)[\(i)]") { return p }
        }
        return nil
    }
}

extension DataType {
    /// A small input of this type (zeros, `"text"`, `false`), for the "how to run it" lines of a
    /// servable's page; nil for types with no JSON form (`file`, `python object`, `unknown`) and for
    /// arrays of more than `maxElements` numbers, which do not fit on a command line.
    public func example(maxElements: Int = 64) -> JSONValue? {
        switch self {
        case .ndarray(let shape, let item):
            let leaf = item?.example(maxElements: maxElements) ?? .double(0)
            guard let shape, !shape.isEmpty else { return .array([leaf]) }
            let dims = shape.map { $0 ?? 1 }
            guard dims.allSatisfy({ $0 >= 0 }), dims.reduce(1, { $0.multipliedReportingOverflow(by: $1).partialValue }) <= maxElements,
                dims.count <= 8
            else { return nil }
            return dims.reversed().reduce(leaf) { inner, n in .array(Array(repeating: inner, count: n)) }
        case .list(let item):
            guard let item else { return .array([]) }
            return item.example(maxElements: maxElements).map { .array([$0]) }
        case .tuple(let types):
            var values: [JSONValue] = []
            for t in types {
                guard let v = t.example(maxElements: maxElements) else { return nil }
                values.append(v)
            }
            return .array(values)
        case .dict(let properties):
            var members: [String: JSONValue] = [:]
            for (k, t) in properties {
                guard let v = t.example(maxElements: maxElements) else { return nil }
                members[k] = v
            }
            return .object(members)
        case .string: return .string("text")
        case .integer: return .int(0)
        case .float: return .double(0)
        case .boolean: return .bool(false)
        case .file, .pythonObject, .unknown: return nil
        }
    }
}
