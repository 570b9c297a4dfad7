import DLHubCore

/// A run request's body, read in one pass over its bytes: no tree of its inputs is built. Each
/// input is kept as where it lies in the body, checked against the servable's input type on the
/// bytes (`DataType.check(_:_:at:)`), and forwarded as the caller wrote it without whitespace.
/// Only the small members (`parameters`, `cache`) are parsed. A body of 10,000 rows used to be
/// parsed into some 50,000 values (a `strtod` per number) and then scanned again to slice it.
struct RunRequest {
    /// Whether the body had `input` (one) rather than `inputs` (a list).
    var single: Bool
    /// Where each input lies in the body.
    var inputs: [Range<Int>]
    var parameters: JSONValue
    /// `"cache": false` keeps the request out of the cache both ways.
    var cache: Bool

    /// Reads `body`; an error that says what to send instead when it is not a run request.
    static func read(_ body: [UInt8], maxInputs: Int) throws(DLHubError) -> RunRequest {
        var scanner = JSONScanner(body)
        scanner.skipSpace()
        let members = scanner.objectMembers()
        scanner.skipSpace()
        guard let members, scanner.position == body.count else {
            // Worked out again only for a bad body, for the parser's words on where it fails.
            do { _ = try JSONValue.parse(body) } catch {
                throw DLHubError(.badRequest, "the request body is not valid JSON (\(error)); send {\"input\": ...} or {\"inputs\": [...]}")
            }
            throw DLHubError(.badRequest, "the request body must be a JSON object: {\"input\": ...} or {\"inputs\": [...]}")
        }
        // As the parser takes a repeated key: the last one.
        func member(_ name: String) -> Range<Int>? { members.last(where: { $0.key.elementsEqual(name.utf8) })?.value }
        func small(_ range: Range<Int>) -> JSONValue { (try? JSONValue.parse(body[range])) ?? .null }
        let single: Bool
        let inputs: [Range<Int>]
        switch (member("input"), member("inputs")) {
        case (let x?, nil):
            single = true
            inputs = [x]
        case (nil, let xs?):
            guard body[xs.lowerBound] == UInt8(ascii: "["), let list = JSONScanner.arrayElements(body, in: xs), !list.isEmpty else {
                throw DLHubError(.badRequest, "\"inputs\" must be a non-empty list")
            }
            guard list.count <= maxInputs else {
                throw DLHubError(.tooLarge, "\(list.count) inputs in one request; send at most \(maxInputs)")
            }
            single = false
            inputs = list
        case (nil, nil): throw DLHubError(.badRequest, "the request has neither \"input\" nor \"inputs\"")
        default: throw DLHubError(.badRequest, "send either \"input\" or \"inputs\", not both")
        }
        let parameters = member("parameters").map(small) ?? .object([:])
        guard parameters.objectValue != nil else { throw DLHubError(.badRequest, "\"parameters\" must be an object of keyword arguments") }
        var cache = true
        if let c = member("cache") {
            guard let on = small(c).boolValue else { throw DLHubError(.badRequest, "\"cache\" must be true or false") }
            cache = on
        }
        return RunRequest(single: single, inputs: inputs, parameters: parameters, cache: cache)
    }

    /// The first input that does not conform to `type`, as the problem with its path.
    func problem(_ body: [UInt8], type: DataType) -> String? {
        for (i, range) in inputs.enumerated() {
            if let problem = type.check(body, range, at: single ? "input" : "inputs[\(i)]") { return problem }
        }
        return nil
    }

    /// Each input as the worker gets it: the caller's bytes without whitespace.
    func payloads(_ body: [UInt8]) -> [[UInt8]] { inputs.map { JSONScanner.minified(body, $0) } }
}
