import DLHubCore
import Foundation
import PropertyBased
import Testing

@testable import DLHubService

// Red team on one boundary: the body of a run request, as the one-pass reader (`RunRequest`)
// reads it. Each body is read twice: by the reader (`RunRequest.read`, `problem`, `payloads`)
// and by the reference (`JSONValue.parse` of the whole body, then `DataType.check` on each parsed
// input, as Runner did before the one-pass reader). They must agree on the outcome, message and
// all, and what an accepted request forwards must be, input by input, the value that was checked,
// on one line, its strings byte for byte as the caller wrote them.

/// What a run request body comes to.
enum RunOutcome: Equatable, CustomStringConvertible {
    case refused(DLHubError.Code, String)
    case invalid(String)
    case accepted(single: Bool, inputs: [JSONValue], parameters: JSONValue, cache: Bool)

    var description: String {
        switch self {
        case .refused(let code, let message): return "refused \(code.rawValue): \(message.prefix(300))"
        case .invalid(let problem): return "invalid: \(problem.prefix(300))"
        case .accepted(let single, let inputs, let parameters, let cache):
            let shown = inputs.prefix(4).map { String(decoding: $0.encoded().prefix(120), as: UTF8.self) }
            return "accepted single=\(single) cache=\(cache) parameters=\(parameters.encodedString().prefix(80)) inputs=\(shown)"
        }
    }

    var isRefused: Bool {
        if case .refused = self { return true }
        return false
    }
}

/// The behaviour the reader must keep: the whole body parsed, then each input checked as a value.
enum ReferenceReader {
    static func outcome(_ body: [UInt8], _ type: DataType, maxInputs: Int) -> RunOutcome {
        let doc: JSONValue
        do { doc = try JSONValue.parse(body) } catch {
            return .refused(.badRequest, "the request body is not valid JSON (\(error)); send {\"input\": ...} or {\"inputs\": [...]}")
        }
        guard doc.objectValue != nil else {
            return .refused(.badRequest, "the request body must be a JSON object: {\"input\": ...} or {\"inputs\": [...]}")
        }
        let single: Bool
        let inputs: [JSONValue]
        switch (doc["input"], doc["inputs"]) {
        case (let x?, nil):
            single = true
            inputs = [x]
        case (nil, let xs?):
            guard let list = xs.arrayValue, !list.isEmpty else { return .refused(.badRequest, "\"inputs\" must be a non-empty list") }
            guard list.count <= maxInputs else {
                return .refused(.tooLarge, "\(list.count) inputs in one request; send at most \(maxInputs)")
            }
            single = false
            inputs = list
        case (nil, nil): return .refused(.badRequest, "the request has neither \"input\" nor \"inputs\"")
        default: return .refused(.badRequest, "send either \"input\" or \"inputs\", not both")
        }
        let parameters = doc["parameters"] ?? .object([:])
        guard parameters.objectValue != nil else { return .refused(.badRequest, "\"parameters\" must be an object of keyword arguments") }
        var cache = true
        if let c = doc["cache"] {
            guard let on = c.boolValue else { return .refused(.badRequest, "\"cache\" must be true or false") }
            cache = on
        }
        for (i, x) in inputs.enumerated() {
            if let problem = type.check(x, at: single ? "input" : "inputs[\(i)]") { return .invalid(problem) }
        }
        return .accepted(single: single, inputs: inputs, parameters: parameters, cache: cache)
    }
}

/// The reader under attack, and what it would forward.
enum OnePassReader {
    static func outcome(_ body: [UInt8], _ type: DataType, maxInputs: Int) -> (outcome: RunOutcome, payloads: [[UInt8]]) {
        let request: RunRequest
        do { request = try RunRequest.read(body, maxInputs: maxInputs) } catch { return (.refused(error.code, error.message), []) }
        if let problem = request.problem(body, type: type) { return (.invalid(problem), []) }
        let payloads = request.payloads(body)
        let inputs = payloads.map { p -> JSONValue in
            (try? JSONValue.parse(p)) ?? .string("<forwarded bytes that do not parse: \(Attack.show(p))>")
        }
        return (.accepted(single: request.single, inputs: inputs, parameters: request.parameters, cache: request.cache), payloads)
    }
}

enum Attack {
    /// Bytes for a failure message: printable ASCII as is, the rest escaped, long runs cut.
    static func show(_ bytes: [UInt8], limit: Int = 240) -> String {
        var out = ""
        for b in bytes.prefix(limit) {
            switch b {
            case 0x20..<0x7F where b != UInt8(ascii: "\\"): out.append(Character(UnicodeScalar(b)))
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x09: out += "\\t"
            default: out += "\\x" + String(b, radix: 16)
            }
        }
        return bytes.count > limit ? out + "... (\(bytes.count) bytes)" : out
    }

    /// The JSON text `text` without the whitespace between its tokens, worked out on its own
    /// terms: inside a string, a quote ends it when an even number of backslashes precede it.
    static func stripped(_ text: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var inString = false
        var backslashes = 0
        for b in text {
            if inString {
                out.append(b)
                if b == UInt8(ascii: "\""), backslashes % 2 == 0 { inString = false }
                backslashes = b == UInt8(ascii: "\\") ? backslashes + 1 : 0
                continue
            }
            if [0x20, 0x0A, 0x0D, 0x09].contains(b) { continue }
            if b == UInt8(ascii: "\"") {
                inString = true
                backslashes = 0
            }
            out.append(b)
        }
        return out
    }

    /// Reads `body` both ways and checks the four invariants; `inputTexts` are the inputs as the
    /// body holds them, when known, for the byte-for-byte check.
    static func compare(
        _ body: [UInt8], _ type: DataType, maxInputs: Int = 100, inputTexts: [[UInt8]]? = nil, note: String = "",
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let expected = ReferenceReader.outcome(body, type, maxInputs: maxInputs)
        let (got, payloads) = OnePassReader.outcome(body, type, maxInputs: maxInputs)
        let context = "\(note)\ntype: \(type)\nbody: \(show(body))\nreader:    \(got)\nreference: \(expected)"
        #expect(got == expected, "\(context)", sourceLocation: sourceLocation)
        switch got {
        case .invalid(let problem):
            // Invariant 2: the problem names the path of the input.
            #expect(
                problem.hasPrefix("input: ") || problem.hasPrefix("input[") || problem.hasPrefix("input.") || problem.hasPrefix("inputs["),
                "\(context)", sourceLocation: sourceLocation)
        case .refused(_, let message):
            // Invariant 4: the words say what is wrong and what to send.
            #expect(
                ["input", "parameters", "cache", "send"].contains(where: message.contains), "a refusal that names nothing: \(context)",
                sourceLocation: sourceLocation)
        case .accepted:
            for p in payloads {
                #expect(
                    !p.contains(0x0A) && !p.contains(0x0D), "a forwarded input spans lines: \(show(p))\n\(context)",
                    sourceLocation: sourceLocation)
            }
            if let inputTexts {
                #expect(
                    payloads == inputTexts.map(stripped),
                    "forwarded bytes are not the caller's (stripped)\n\(payloads.map { show($0) })\n\(context)",
                    sourceLocation: sourceLocation)
            }
        }
    }

    static func utf8(_ s: String) -> [UInt8] { Array(s.utf8) }

    static func nested(_ depth: Int, _ leaf: String = "1") -> String {
        String(repeating: "[", count: depth) + leaf + String(repeating: "]", count: depth)
    }
}

// MARK: - A seeded generator of hostile bodies

struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func oneIn(_ n: Int) -> Bool { below(n) == 0 }
    mutating func pick<T>(_ xs: [T]) -> T { xs[below(xs.count)] }
}

/// Makes run request bodies: mostly close to what the type wants, with the tricks of the trade
/// mixed in (escaped and repeated keys, odd numbers and escapes, raw bytes, nesting at the limit,
/// truncation, stray bytes).
struct HostileBodies {
    var rng: SplitMix64
    /// 1 in this many inputs (and parameters) are wrapped in arrays to straddle the nesting limit.
    var deepOneIn = 60

    static let numbers = [
        "0", "-0", "1", "-1", "42", "2.50", "-3e2", "1E400", "-1E400", "1e-400", "1.5E+3", "9223372036854775807", "9223372036854775808",
        "-9223372036854775808", "-9223372036854775809", "123456789012345678901234567890", "0.1", "1e05", "4.0", "-0.0", "5e-324",
        "1.7976931348623157e308",
    ]
    static let integers = ["0", "-0", "1", "-7", "42", "9223372036854775807", "-9223372036854775808", "1000000"]
    /// Not JSON by RFC 8259, yet `JSONValue.parse` takes them: the reference, so they must agree.
    static let laxNumbers = ["01", "-01", "00", "007.5", "-00.0e1"]
    static let badNumbers = [
        "1.", "-", ".5", "+1", "1e", "1e+", "0x10", "NaN", "Infinity", "-Infinity", "1.e3", "--1", "1ee2", "-.5", "1e-+2",
    ]
    static let pieces: [[UInt8]] = [
        Attack.utf8("abc"), Attack.utf8(" "), Attack.utf8("x y"), Attack.utf8(#"\""#), Attack.utf8(#"\\"#), Attack.utf8(#"\/"#),
        Attack.utf8(#"\b\f\n\r\t"#), Attack.utf8(#"\u0000"#), Attack.utf8(#"\u0041"#), Attack.utf8(#"\u00e9"#), Attack.utf8(#"\u00E9"#),
        Attack.utf8(#"\u2028"#), Attack.utf8("\u{2028}"), Attack.utf8("é"), Attack.utf8("😀"), Attack.utf8(#"\ud83d\ude00"#),
        Attack.utf8(#"\uD83D\uDE00"#), Attack.utf8(#"],"input":"#), Attack.utf8("} {"), Attack.utf8(","), Attack.utf8(":"),
        Attack.utf8(#"\\\""#), Attack.utf8("\u{7F}"), Attack.utf8(#"\u0022"#), Attack.utf8(#"\u005c"#),
    ]
    /// Raw bytes that are not UTF-8: the parser replaces them, so both must take them.
    static let laxPieces: [[UInt8]] = [[0xFF], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82]]
    static let badPieces: [[UInt8]] = [
        Attack.utf8(#"\ud800"#), Attack.utf8(#"\udc00"#), Attack.utf8(#"\ud800\u0041"#), Attack.utf8(#"\x"#), Attack.utf8(#"\u12"#),
        Attack.utf8(#"\u12G4"#), [0x0A], [0x09], [0x00], [0x1F], Attack.utf8(#"\U0041"#), Attack.utf8(#"\'"#),
        Attack.utf8(#"\ud800\ud800"#),
    ]
    static let spaces: [[UInt8]] = [[0x20], [0x0A], [0x0D, 0x0A], [0x09], [0x20, 0x0A, 0x09, 0x20], [0x0D]]
    static let badSpaces: [[UInt8]] = [[0x0B], [0x0C], [0xC2, 0xA0], [0xE2, 0x80, 0xA8], [0x00], [0xEF, 0xBB, 0xBF]]

    mutating func ws() -> [UInt8] {
        if rng.oneIn(1500) { return rng.pick(Self.badSpaces) }
        return rng.oneIn(2) ? [] : rng.pick(Self.spaces)
    }

    mutating func number(integer: Bool = false) -> [UInt8] {
        if rng.oneIn(30) { return Attack.utf8(rng.pick(Self.laxNumbers)) }
        if rng.oneIn(150) { return Attack.utf8(rng.pick(Self.badNumbers)) }
        if integer, !rng.oneIn(8) { return Attack.utf8(rng.pick(Self.integers)) }
        return Attack.utf8(rng.pick(Self.numbers))
    }

    mutating func string() -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "\"")]
        for _ in 0..<rng.below(4) {
            if rng.oneIn(40) {
                out += rng.pick(Self.laxPieces)
            } else if rng.oneIn(150) {
                out += rng.pick(Self.badPieces)
            } else {
                out += rng.pick(Self.pieces)
            }
        }
        if rng.oneIn(800) { return out }  // unterminated
        return out + [UInt8(ascii: "\"")]
    }

    /// A key naming `name`, its letters sometimes written as `\u` escapes.
    mutating func key(_ name: String) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "\"")]
        let escape = rng.oneIn(5)
        for b in name.utf8 {
            if escape, b < 0x80, rng.oneIn(2) {
                out += Attack.utf8(String(format: rng.oneIn(2) ? "\\u%04x" : "\\u%04X", Int(b)))
            } else {
                out.append(b)
            }
        }
        return out + [UInt8(ascii: "\"")]
    }

    mutating func array(_ elements: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "[")] + ws()
        for (i, e) in elements.enumerated() {
            if i > 0 { out += rng.oneIn(400) ? ws() : ws() + [UInt8(ascii: ",")] + ws() }
            out += e
        }
        if rng.oneIn(400) { out += Attack.utf8(",") }
        out += ws()
        if rng.oneIn(800) { return out }
        return out + [UInt8(ascii: "]")]
    }

    mutating func object(_ members: [([UInt8], [UInt8])]) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "{")] + ws()
        for (i, (k, v)) in members.enumerated() {
            if i > 0 { out += ws() + [UInt8(ascii: ",")] + ws() }
            let key = rng.oneIn(800) ? Array(k.dropFirst().dropLast()) : k
            out += key + ws() + (rng.oneIn(800) ? [] : [UInt8(ascii: ":")]) + ws() + v
        }
        if rng.oneIn(400) { out += Attack.utf8(",") }
        out += ws()
        return out + [UInt8(ascii: "}")]
    }

    mutating func scalar() -> [UInt8] {
        switch rng.below(10) {
        case 0...4: return number()
        case 5, 6: return string()
        case 7: return Attack.utf8(rng.pick(["true", "false"]))
        case 8: return Attack.utf8(rng.oneIn(20) ? rng.pick(["tru", "nul", "True", "fals"]) : rng.pick(["null", "{}", "[]"]))
        default: return any(depth: 3)
        }
    }

    mutating func any(depth: Int) -> [UInt8] {
        switch depth > 4 ? rng.below(6) : rng.below(9) {
        case 0, 1: return number()
        case 2, 3: return string()
        case 4: return Attack.utf8(rng.pick(["true", "false", "null"]))
        case 5 where !rng.oneIn(15): return Attack.utf8(rng.pick(["true", "false", "null", "0"]))
        case 5: return Attack.utf8(rng.pick(["tru", "nul", "True", "nulll", "falsee", "n"]))
        case 6, 7: return array((0..<rng.below(4)).map { _ in any(depth: depth + 1) })
        default:
            let names = ["a", "b", "a", "é", "K", "\u{212A}", "input", ""]
            return object((0..<rng.below(4)).map { _ in (key(rng.pick(names)), any(depth: depth + 1)) })
        }
    }

    /// A value close to `type`: conforming most of the time.
    mutating func value(_ type: DataType, depth: Int = 0) -> [UInt8] {
        if rng.oneIn(12) || depth > 6 { return any(depth: depth) }
        switch type {
        case .ndarray(let shape, let item):
            guard let shape else { return rng.oneIn(3) ? leaf(item, depth) : array((0..<rng.below(4)).map { _ in leaf(item, depth + 1) }) }
            return nest(shape[...], item, depth)
        case .list(let item):
            return array((0..<rng.below(4)).map { _ in item.map { value($0, depth: depth + 1) } ?? any(depth: depth + 1) })
        case .tuple(let types):
            var elements = types.map { value($0, depth: depth + 1) }
            if rng.oneIn(10) { elements.removeLast() }
            if rng.oneIn(10) { elements.append(scalar()) }
            return array(elements)
        case .dict(let properties):
            var members = properties.sorted { $0.key < $1.key }.map { (key($0.key), value($0.value, depth: depth + 1)) }
            if rng.oneIn(8), !members.isEmpty { members.remove(at: rng.below(members.count)) }
            if rng.oneIn(6) { members.append((key(rng.pick(["z", "a", "b"])), any(depth: depth + 1))) }
            if rng.oneIn(6), let first = members.first {
                members.insert((first.0, any(depth: depth + 1)), at: rng.below(members.count + 1))
            }
            return object(members.shuffled(using: &rng))
        case .string: return string()
        case .integer: return number(integer: true)
        case .float: return number()
        case .boolean: return Attack.utf8(rng.pick(["true", "false"]))
        case .file, .pythonObject, .unknown: return any(depth: depth)
        }
    }

    mutating func leaf(_ item: DataType?, _ depth: Int) -> [UInt8] {
        if let item { return value(item, depth: depth + 1) }
        return rng.oneIn(15) ? Attack.utf8(rng.pick(["null", "{}", "[]", "[1]", "{\"a\":1}"])) : scalar()
    }

    mutating func nest(_ dims: ArraySlice<Int?>, _ item: DataType?, _ depth: Int) -> [UInt8] {
        guard let dim = dims.first else { return leaf(item, depth) }
        var count = dim ?? rng.below(4)
        if rng.oneIn(15) { count = max(0, count + rng.pick([-1, 1])) }
        if rng.oneIn(25) { return leaf(item, depth) }  // a dimension too few
        return array((0..<count).map { _ in nest(dims.dropFirst(), item, depth + 1) })
    }

    /// `text` in arrays enough to be near the nesting limit of 512 (the body's object included).
    mutating func deep(_ text: [UInt8]) -> [UInt8] {
        let k = 505 + rng.below(10)
        return [UInt8](repeating: UInt8(ascii: "["), count: k) + text + [UInt8](repeating: UInt8(ascii: "]"), count: k)
    }

    struct Body {
        var bytes: [UInt8]
        /// The inputs the body holds as written, when the generator knows them.
        var inputTexts: [[UInt8]]?
    }

    mutating func body(_ type: DataType) -> Body {
        if rng.oneIn(60) { return Body(bytes: rng.oneIn(2) ? array([value(type)]) : value(type), inputTexts: nil) }
        var members: [(name: String, key: [UInt8], value: [UInt8], elements: [[UInt8]]?)] = []
        func add(_ name: String, _ value: [UInt8], _ elements: [[UInt8]]? = nil) {
            members.append((name, key(name), value, elements))
        }
        switch rng.below(12) {
        case 0...4:
            var v = value(type)
            if rng.oneIn(deepOneIn) { v = deep(v) }
            add("input", v)
        case 5...9:
            var elements = (0..<(1 + rng.below(5))).map { _ in value(type) }
            if rng.oneIn(deepOneIn) { elements[0] = deep(elements[0]) }
            if rng.oneIn(40) { elements = [] }
            add("inputs", array(elements), elements)
        case 10: add("inputs", value(type))
        default: break
        }
        for _ in 0..<rng.below(4) {
            switch rng.below(14) {
            case 0: add("input", value(type))
            case 1:
                let elements = (0..<(1 + rng.below(3))).map { _ in value(type) }
                add("inputs", array(elements), elements)
            case 2...7:
                var p = rng.oneIn(10) ? scalar() : object([(key("scale"), number()), (key("mode"), string())])
                if rng.oneIn(max(1, deepOneIn / 2)) { p = object([(key("a"), deep(Attack.utf8("1")))]) }
                add("parameters", p)
            case 8, 9: add("cache", Attack.utf8(rng.pick(["true", "false", "true", "false", "true", "null", "\"no\"", "1", "[true]"])))
            default: add(rng.pick(["x", "Input", "input ", "inputs\u{0}", "INPUTS", "\u{212A}", "in"]), any(depth: 2))
            }
        }
        members.shuffle(using: &rng)
        var bytes = object(members.map { ($0.key, $0.value) })
        bytes = ws() + bytes + ws()
        // The inputs that count: the last member of each name, as the parser takes it.
        let lastInput = members.last { $0.name == "input" }
        let lastInputs = members.last { $0.name == "inputs" }
        var texts: [[UInt8]]?
        if let lastInput, lastInputs == nil { texts = [lastInput.value] }
        if let lastInputs, lastInput == nil { texts = lastInputs.elements }
        if rng.oneIn(10) {
            texts = nil
            switch rng.below(6) {
            case 0: bytes = Array(bytes.prefix(rng.below(bytes.count + 1)))
            case 1:
                bytes.insert(
                    rng.pick([0x00, 0x22, 0x2C, 0x5D, 0x7D, 0x5B, 0x7B, 0x5C, 0xFF, 0x20, 0x0A, 0x3A]), at: rng.below(bytes.count + 1))
            case 2: bytes += Attack.utf8(rng.pick(["x", "{}", "\u{0}", " 1", ","]))
            case 3: bytes = [0xEF, 0xBB, 0xBF] + bytes
            case 4: bytes += bytes
            default: if !bytes.isEmpty { bytes[rng.below(bytes.count)] = UInt8(rng.below(256)) }
            }
        }
        return Body(bytes: bytes, inputTexts: texts)
    }
}

extension SplitMix64: RandomNumberGenerator {}

// MARK: - The tests

@Suite struct RunRequestAttackTests {
    static let types: [DataType] = [
        .ndarray(shape: [], item: nil), .ndarray(shape: [nil], item: nil), .ndarray(shape: [0], item: nil), .ndarray(shape: [4], item: nil),
        .ndarray(shape: [nil, 4], item: nil), .ndarray(shape: [2, nil], item: nil), .ndarray(shape: [nil, nil, 2], item: nil),
        .ndarray(shape: [0, 3], item: nil), .ndarray(shape: [nil], item: .integer), .ndarray(shape: [2, 2], item: .string),
        .ndarray(shape: nil, item: nil), .ndarray(shape: nil, item: .float), .ndarray(shape: [nil], item: .ndarray(shape: [2], item: nil)),
        .list(item: nil), .list(item: .integer), .list(item: .ndarray(shape: [2], item: nil)), .tuple([.integer, .string, .boolean]),
        .dict(properties: ["a": .integer, "b": .list(item: .float), "é": .string]), .string, .integer, .float, .boolean, .file,
        .pythonObject(nil), .unknown,
    ]

    /// The differential: generated bodies against generated types, reader against reference,
    /// with the forwarded bytes checked against what the generator wrote. Nesting at the limit is
    /// left out here (its own test below) so that any other disagreement shows.
    @Test func theReaderAgreesWithTheReferenceOnGeneratedBodies() async {
        await propertyCheck(count: 2500, input: Gen.uint64(in: 0...UInt64.max)) { seed in
            var bodies = HostileBodies(rng: SplitMix64(state: seed))
            bodies.deepOneIn = Int.max
            let type = bodies.rng.pick(Self.types)
            let body = bodies.body(type)
            Attack.compare(body.bytes, type, maxInputs: 4, inputTexts: body.inputTexts, note: "seed \(seed)")
        }
    }

    /// The same with inputs and parameters wrapped to straddle the nesting limit of 512: fails on
    /// the break below (bodies of exactly 512 levels), and on nothing else.
    @Test func theReaderAgreesWithTheReferenceNearTheNestingLimit() async {
        await propertyCheck(count: 300, input: Gen.uint64(in: 0...UInt64.max)) { seed in
            var bodies = HostileBodies(rng: SplitMix64(state: seed))
            bodies.deepOneIn = 1
            let type = bodies.rng.pick([DataType.unknown, .list(item: nil), .ndarray(shape: nil, item: nil), .file])
            let body = bodies.body(type)
            Attack.compare(body.bytes, type, maxInputs: 4, inputTexts: body.inputTexts, note: "seed \(seed)")
        }
    }

    // MARK: Nesting

    /// Was a break, found by the red team (invariant 1): the reader walks the body's object without counting it
    /// (`JSONScanner.objectMembers` calls `walkObject` directly; only `value()` counts depth), the
    /// parser counts it, so a body of 512 levels, the object included, which the parser refuses
    /// ("nesting deeper than 512 levels"), is accepted: its input (or parameters) reaches a worker.
    /// With "cache" it is still refused, but with other words ("cache" must be true or false).
    @Test(arguments: ["input", "inputs", "parameters", "cache"])
    func aBodyNestedOneLevelPastTheParsersLimitIsRefused(_ member: String) {
        let text =
            switch member {
            case "input": #"{"input": "# + Attack.nested(511) + "}"  // input at 511 levels inside the object
            case "inputs": #"{"inputs": ["# + Attack.nested(510) + "]}"  // an element at 510 inside the list
            case "parameters": #"{"input": 1, "parameters": {"a": "# + Attack.nested(510) + "}}"
            default: #"{"input": 1, "cache": "# + Attack.nested(511) + "}"
            }
        let what = "\(member) nested to 512 levels in all"
        let body = Attack.utf8(text)
        #expect(throws: (any Error).self, "reference: the parser refuses it") { try JSONValue.parse(body) }
        Attack.compare(body, .unknown, note: what)
    }

    /// What held: at the parser's limit both take it; far past it, open or closed, anywhere in the
    /// body, both refuse without running out of stack.
    @Test func nestingAtTheLimitAndFarPastItHolds() {
        let open100k = String(repeating: "[", count: 100_000)
        let objects100k = String(repeating: #"{"a":"#, count: 100_000)
        let bodies = [
            #"{"input": "# + Attack.nested(510) + "}", #"{"inputs": ["# + Attack.nested(509) + "]}",
            #"{"input": "# + Attack.nested(600) + "}", #"{"input": "# + open100k + "}", #"{"input": "# + objects100k,
            #"{"inputs": ["# + open100k, #"{"input": 1, "parameters": "# + objects100k, open100k, objects100k,
            #"{"input": 1, "x": "# + Attack.nested(100_000) + "}",
        ]
        for text in bodies {
            for type in [DataType.unknown, .ndarray(shape: [nil], item: nil), .list(item: .integer)] {
                Attack.compare(Attack.utf8(text), type, note: "\(text.prefix(40))... (\(text.utf8.count) bytes)")
            }
        }
    }

    // MARK: Keys

    @Test(arguments: [
        #"{"input": [1, 2, 3, 4], "input": [1, 2, 3]}"#,
        #"{"input": [1, 2, 3], "input": [1, 2, 3, 4]}"#,
        #"{"input": [1, 2, 3, 4], "\u0069nput": "x"}"#,
        #"{"\u0069nput": "x", "input": [5, 6, 7, 8]}"#,
        #"{"\u0069\u006E\u0070\u0075\u0074": [1, 2, 3, 4]}"#,
        #"{"input": [1, 2, 3, 4], "inp\u0075ts": [[1, 2, 3, 4]]}"#,
        #"{"inputs": [[1, 2, 3, 4]], "inputs": []}"#,
        #"{"inputs": [], "inputs": [[1, 2, 3, 4]]}"#,
        #"{"inputs": [[1, 2, 3, 4]], "inputs": {"0": [1, 2, 3, 4]}}"#,
        #"{"inputs": "[[1, 2, 3, 4]]"}"#,
        #"{"Input": [1, 2, 3, 4]}"#,
        #"{"input ": [1, 2, 3, 4]}"#,
        #"{"input\u0000": [1, 2, 3, 4]}"#,
        #"{"input": [1, 2, 3, 4], "parameters": {"k": 1}, "parameters": null}"#,
        #"{"input": [1, 2, 3, 4], "parameters": null, "parameters": {"k": 1}}"#,
        #"{"input": [1, 2, 3, 4], "cache": false, "c\u0061che": true}"#,
        #"{"input": [1, 2, 3, 4], "cache": "false"}"#,
        #"{"input": [1, 2, 3, 4], "cache": 0}"#,
        #"{"input": null}"#,
        #"{"inputs": [null]}"#,
        "{\"input\": [1, 2, 3, 4], \"in\u{FF}put\": 1}",
    ])
    func repeatedAndEscapedKeysReadAsTheParserReadsThem(_ text: String) {
        for type in [DataType.ndarray(shape: [4], item: nil), .unknown, .list(item: .integer)] {
            Attack.compare(Attack.utf8(text), type)
        }
    }

    /// A raw invalid UTF-8 byte in a key: the parser makes it U+FFFD; the reader compares bytes.
    @Test func invalidUTF8InKeys() {
        for raw: [UInt8] in [[0xFF], [0xC0, 0x80], [0xED, 0xA0, 0x80]] {
            let body =
                Attack.utf8(#"{"input": 1, ""#) + Attack.utf8("inpu") + raw + Attack.utf8(#"t": 2, "x"#) + raw + Attack.utf8(#"": 3}"#)
            Attack.compare(body, .integer)
        }
    }

    // MARK: Inputs of mixed kinds, shapes, item types

    @Test(arguments: [
        (#"{"inputs": [[1, 2, 3, 4], [1, 2, 3], "x", null, {}]}"#, DataType.ndarray(shape: [4], item: nil)),
        (#"{"inputs": [[1, 2, 3, 4], ["a", true, -0, 1E400], [[1], 2, 3, 4]]}"#, .ndarray(shape: [4], item: nil)),
        (#"{"inputs": [[[1, 2, 3, 4]], [], [[1, 2, 3, 4], [5, 6, 7]]]}"#, .ndarray(shape: [nil, 4], item: nil)),
        (#"{"inputs": [[], [[]], [[], []]]}"#, .ndarray(shape: [nil, 0], item: nil)),
        (#"{"inputs": [[], [1]]}"#, .ndarray(shape: [0], item: nil)),
        (#"{"inputs": [[], [1], [[]]]}"#, .ndarray(shape: [nil], item: nil)),
        (#"{"input": []}"#, .ndarray(shape: [0, 3], item: nil)),
        (#"{"input": []}"#, .ndarray(shape: [3, 0], item: nil)),
        (#"{"input": [[], [], []]}"#, .ndarray(shape: [3, 0], item: nil)),
        (#"{"input": [[]]}"#, .ndarray(shape: [], item: nil)),
        (#"{"input": null}"#, .ndarray(shape: [], item: nil)),
        (#"{"input": {}}"#, .ndarray(shape: nil, item: nil)),
        (#"{"input": 7}"#, .ndarray(shape: nil, item: nil)),
        (#"{"inputs": [[1, -0, 2], [1, 2.0], [1, "2"], [1, 9223372036854775808]]}"#, .ndarray(shape: [nil], item: .integer)),
        (#"{"inputs": [["a", "b"], ["a", 1], [["a"], "b"]]}"#, .ndarray(shape: [2], item: .string)),
        (#"{"inputs": [[[1, 2]], [[1, 2, 3]], [1, 2]]}"#, .ndarray(shape: [nil], item: .ndarray(shape: [2], item: nil))),
        (#"{"inputs": [[1, 1E400, -1e-400], [1, null]]}"#, .ndarray(shape: [nil], item: .float)),
        (#"{"inputs": [[1, "x", true], [1, "x", "true"], [1, "x"]]}"#, .tuple([.integer, .string, .boolean])),
        (
            #"{"inputs": [{"a": 1, "b": [], "é": ""}, {"a": 1, "b": [], "e\u0301": ""}, {"a": 1, "b": []}]}"#,
            .dict(properties: ["a": .integer, "b": .list(item: .float), "é": .string])
        ),
        (
            #"{"inputs": [{"a": "x", "a": 1, "b": [], "é": ""}, {"a": 1, "a": "x", "b": [], "é": ""}]}"#,
            .dict(properties: ["a": .integer, "b": .list(item: .float), "é": .string])
        ),
    ])
    func inputsOfMixedKindsAgainstShapes(_ text: String, _ type: DataType) {
        Attack.compare(Attack.utf8(text), type)
    }

    // MARK: Numbers and strings

    @Test(arguments: [
        "-0", "-0.0", "0e0", "1E400", "-1E400", "1e-400", "1e+400", "9223372036854775807", "9223372036854775808", "-9223372036854775809",
        "1" + String(repeating: "0", count: 400), "0." + String(repeating: "0", count: 400) + "1", "5e-324", "2.5E-07",
        "01", "-01", "00", "1.", "-", ".5", "+1", "1e", "1E+", "0x1", "NaN", "-Infinity", "1.e5", "- 1", "1 2", "1_000",
    ])
    func numbersAgainstEveryScalarType(_ number: String) {
        for type in [
            DataType.integer, .float, .string, .boolean, .ndarray(shape: [], item: nil), .ndarray(shape: [1], item: .integer), .unknown,
        ] {
            Attack.compare(Attack.utf8(#"{"input": "# + number + "}"), type, inputTexts: [Attack.utf8(number)])
            Attack.compare(
                Attack.utf8(#"{"inputs": ["# + number + ", [" + number + "]]}"), type,
                inputTexts: [Attack.utf8(number), Attack.utf8("[" + number + "]")])
        }
    }

    @Test(arguments: [
        #""a\u2028b\u2029c""#, "\"a\u{2028}b\u{2029}c\u{85}\"", #""\n\r\t\b\f\/\\\"""#, #""\u0000 \u001f \u007f""#, #""\\""#, #""\\\\""#,
        #""\"\\\"\\""#, #""\ud83d\ude00\uD83D\uDE00""#, #""  spaced   out  ""#, #""],\"inputs\":[1,2]""#, #""\ud800""#, #""\udfff""#,
        #""\ud800\u0041""#, #""\ud83d""#, "\"raw\nnewline\"", "\"raw\ttab\"", "\"nul\u{0}byte\"", #""\x41""#, #""\u004""#, #""\u00G1""#,
        #""unterminated"#, #""\"#, "\"\u{7F}\"", "\"é😀\"",
    ])
    func stringsAreForwardedByteForByte(_ string: String) {
        let s = Attack.utf8(string)
        for type in [DataType.string, .ndarray(shape: [nil], item: nil), .list(item: .string), .unknown] {
            let element = type == .string ? s : Attack.utf8("[ ") + s + Attack.utf8(" ,\n ") + s + Attack.utf8(" ]")
            Attack.compare(Attack.utf8("{\"input\":\r\n ") + element + Attack.utf8(" \t}"), type, inputTexts: [element])
        }
    }

    /// Raw bytes outside UTF-8, inside strings: the parser takes them (as U+FFFD), so the reader
    /// must too, and forward them as written.
    @Test func invalidUTF8InStringsAgrees() {
        for raw: [UInt8] in [[0xFF], [0xFE, 0xFF], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82]] {
            let s = [UInt8(ascii: "\"")] + raw + Attack.utf8(" x ") + raw + [UInt8(ascii: "\"")]
            for type in [DataType.string, .ndarray(shape: [], item: nil), .unknown] {
                Attack.compare(Attack.utf8(#"{"input": "#) + s + Attack.utf8("}"), type, inputTexts: [s])
            }
            // and outside strings: refused
            Attack.compare(Attack.utf8(#"{"input": 1"#) + raw + Attack.utf8("}"), .unknown)
            Attack.compare(raw + Attack.utf8(#"{"input": 1}"#), .unknown)
        }
    }

    /// NUL bytes and other stray bytes anywhere in an otherwise good body.
    @Test func aStrayByteAtEveryPosition() {
        let good = Attack.utf8(
            #"{"inputs": [[1.5, "a b", true, -0], [2e3, "\u00e9", false, 01]], "parameters": {"k": [null]}, "cache": false}"#)
        for position in 0...good.count {
            for stray: UInt8 in [0x00, 0x0B, 0xFF, 0x22, 0x5C, 0x2C, 0x5D, 0x7D, 0x0A] {
                var body = good
                body.insert(stray, at: position)
                Attack.compare(body, .ndarray(shape: [4], item: nil), note: "byte \(stray) at \(position)")
            }
            Attack.compare(Array(good.prefix(position)), .ndarray(shape: [4], item: nil), note: "cut at \(position)")
        }
    }

    // MARK: Size

    @Test func aHundredThousandInputsAndOneMore() throws {
        let row = "[5.1, 3.5, 1.4, 0.2]"
        let body = Attack.utf8(#"{"inputs": ["# + Array(repeating: row, count: 100_000).joined(separator: ",") + "]}")
        let request = try RunRequest.read(body, maxInputs: 100_000)
        #expect(request.problem(body, type: .ndarray(shape: [4], item: nil)) == nil)
        #expect(request.payloads(body).count == 100_000)
        #expect(request.payloads(body).allSatisfy { $0 == Attack.utf8("[5.1,3.5,1.4,0.2]") })
        let more = Attack.utf8(#"{"inputs": ["# + Array(repeating: "0", count: 100_001).joined(separator: ",") + "]}")
        let error = #expect(throws: DLHubError.self) { try RunRequest.read(more, maxInputs: 100_000) }
        #expect(error?.code == .tooLarge && error?.message.contains("send at most 100000") == true, "\(String(describing: error))")
    }

    /// A 50 MB body (one long string) read and forwarded, and an 8 MB one left open, refused: in
    /// bounded time (debug build, linear: about 2.5 s and 0.5 s here; a hang or a quadratic
    /// pass would blow the bound).
    @Test func fiftyMegabyteBodies() throws {
        let n = 50_000_000
        let clock = ContinuousClock()
        var string = Attack.utf8(#"{"input": ""#)
        string += [UInt8](repeating: UInt8(ascii: "a"), count: n)
        string += Attack.utf8(#""}"#)
        var started = clock.now
        let request = try RunRequest.read(string, maxInputs: 1)
        #expect(request.problem(string, type: .ndarray(shape: [], item: nil)) == nil)
        #expect(request.payloads(string).first?.count == n + 2)
        var elapsed = clock.now - started
        #expect(elapsed < .seconds(10), "\(elapsed) for 50 MB")
        var open = Attack.utf8(#"{"input": ""#) + [UInt8](repeating: UInt8(ascii: "a"), count: 8_000_000)
        open += Attack.utf8(#"\"#)
        started = clock.now
        let error = #expect(throws: DLHubError.self) { try RunRequest.read(open, maxInputs: 1) }
        #expect(
            error?.message.contains("unterminated string") == true && error?.message.contains("send {\"input\"") == true,
            "\(String(describing: error))")
        elapsed = clock.now - started
        #expect(elapsed < .seconds(5), "\(elapsed) to refuse 8 MB")
    }

    /// A body of many tiny inputs, past `maxInputs`: refused for being too many, quickly.
    @Test func manyTinyInputsPastTheLimit() {
        let count = 1_000_000
        var body = Attack.utf8(#"{"inputs": ["#)
        body.reserveCapacity(2 * count + 16)
        for i in 0..<count {
            if i > 0 { body.append(UInt8(ascii: ",")) }
            body.append(UInt8(ascii: "0"))
        }
        body += Attack.utf8("]}")
        let clock = ContinuousClock()
        let started = clock.now
        let error = #expect(throws: DLHubError.self) { try RunRequest.read(body, maxInputs: 100_000) }
        #expect(error?.code == .tooLarge, "\(String(describing: error))")
        let elapsed = clock.now - started
        #expect(elapsed < .seconds(4), "\(elapsed) to refuse \(count) inputs")
    }
}

extension RunRequestAttackTests {
    /// Where the reference itself lets through what a worker reads differently: the reader forwards
    /// the caller's bytes, the worker (Python's `json`, `for line in sys.stdin` under `LANG=C.UTF-8`,
    /// so `surrogateescape`) reads them as another value, or not at all.
    @Suite struct BeyondTheReference {
        /// Was a break, found by the red team (invariant 3, and 4): `01`, `-01`, `00` are not JSON (RFC 8259: no leading zeros), but
        /// `JSONValue.parse` and `JSONScanner` both take them, and the reader forwards them as written.
        /// Python's `json.loads` refuses the whole batch line (`Expecting ',' delimiter`), so the
        /// worker dies: every input batched with this one is run again alone on fresh workers, and this
        /// one fails as a crash instead of a 400 that says to write `1`.
        @Test(arguments: ["01", "-01", "00", "007.5", "[1, 02]"])
        func numbersWithLeadingZerosAreRefused(_ number: String) {
            let body = Attack.utf8(#"{"input": "# + number + "}")
            #expect(throws: DLHubError.self, "forwarded as \(number) to a worker that cannot parse it") {
                try RunRequest.read(body, maxInputs: 1)
            }
        }

        /// Was a break, found by the red team (invariant 3): raw bytes that are not UTF-8 in a string are checked as U+FFFD (the
        /// parser replaces them) but forwarded raw; the worker reads them as lone surrogates
        /// (`'a\udcffb'`), a different string, and a worker that echoes it writes `"\udcff"`, which the
        /// pilot's output check (`JSONScanner`, surrogates in pairs) refuses.
        @Test func invalidUTF8IsRefusedOrForwardedAsChecked() throws {
            let body = Attack.utf8(#"{"input": "a"#) + [0xFF] + Attack.utf8(#"b"}"#)
            let request: RunRequest
            do { request = try RunRequest.read(body, maxInputs: 1) } catch { return }  // refusing it is a fix
            #expect(request.problem(body, type: .string) != nil, "a string that is not UTF-8 passes the string check")
            let forwarded = try #require(request.payloads(body).first)
            #expect(
                String(validating: forwarded, as: UTF8.self) != nil,
                "forwarded \(Attack.show(forwarded)): not UTF-8, the worker reads another string")
        }

        /// Was a break, found by the red team (invariant 2, in the reference check): `DataType.check` looks dict properties up in a
        /// Swift dictionary, whose keys compare by canonical equivalence, so `"\u212A"` (KELVIN SIGN)
        /// is the property `K`. The worker's dict has no `K` (or, with both keys, `K` is the string).
        @Test(arguments: [
            #"{"input": {"\u212A": 5}}"#, #"{"input": {"K": "not an integer", "\u212A": 5}}"#, #"{"input": {"caf\u00e9": 5}}"#,
        ])
        func dictKeysAreCheckedAsTheWorkerReadsThem(_ text: String) throws {
            let body = Attack.utf8(text)
            let type = text.contains("caf") ? DataType.dict(properties: ["cafe\u{301}": .integer]) : .dict(properties: ["K": .integer])
            let request: RunRequest
            do { request = try RunRequest.read(body, maxInputs: 1) } catch { return }  // refusing it is a fix
            #expect(request.problem(body, type: type) != nil, "\(text) passes \(type) though its key is not byte for byte the property")
        }
    }
}
