import DLHubCore
import PropertyBased
import Testing

@testable import DLHubService

/// Inputs go to the worker as the caller wrote it, minified: whatever a request holds, each
/// forwarded input is the same JSON value the service checked, on one line (the worker protocol
/// is a line per batch), with strings left exactly as they were. The body is read in one pass
/// (`RunRequest`), its inputs checked on the bytes.
@Suite struct RequestInputBytesTests {
    static let bodies = [
        #"{"inputs": [ [1, 2.50, -3e2] , {"b": "x y", "a": [ ]}, "a \" b", "c\\" , "tab\there" ]}"#,
        "{\n  \"inputs\": [\n    [5.1,\n     3.5],\n    \"line\\nbreak\"\r\n  ]\n}",
        #"{"inputs": [1], "inputs": [[2, 3], "last wins"]}"#,
        #"{"inp\u0075ts": ["escaped key", {"k": "\u2028 \ud83d\ude00"}]}"#,
        #"{"input": {"deep": [[[ {"x": null} ]]], "s": " ] } , "}}"#,
    ]

    @Test(arguments: bodies)
    func eachForwardedInputIsTheCheckedValueOnOneLine(_ text: String) throws {
        let body = Array(text.utf8)
        let parsed = try JSONValue.parse(body)
        let single = parsed["input"] != nil
        let expected = single ? [parsed["input"]!] : try #require(parsed["inputs"]?.arrayValue)
        let request = try RunRequest.read(body, maxInputs: 100)
        #expect(request.single == single)
        let forwarded = request.payloads(body)
        #expect(forwarded.count == expected.count)
        for (bytes, value) in zip(forwarded, expected) {
            #expect(!bytes.contains(0x0A) && !bytes.contains(0x0D), "\(String(decoding: bytes, as: UTF8.self))")
            #expect(try JSONValue.parse(bytes) == value)
        }
    }

    /// What the parser refuses, the one-pass reader refuses with the same words.
    @Test(arguments: [
        "", "[1]", "{", #"{"input": [1,]}"#, #"{"input": 1} x"#, #"{"inputs": []}"#, #"{"inputs": 3}"#, #"{"nothing": 1}"#,
        #"{"input": 1, "inputs": [1]}"#, #"{"input": 1, "parameters": [1]}"#, #"{"input": 1, "cache": "no"}"#,
        String(repeating: "[", count: 600) + String(repeating: "]", count: 600),
    ])
    func badBodiesAreRefusedWithWhatToSend(_ text: String) {
        #expect(throws: DLHubError.self) { try RunRequest.read(Array(text.utf8), maxInputs: 100) }
    }

    /// Generated inputs and declared shapes: the check on the bytes agrees with the check on the
    /// parsed value, message and all.
    @Test func theCheckOnTheBytesAgreesWithTheCheckOnTheValue() async {
        let shapes: [[Int?]] = [[], [nil], [4], [nil, 4], [2, nil], [nil, nil, 2], [1, 1]]
        let leaves: [String] = ["1", "-2.5e3", "\"s\"", "true", "false", "null", "{}", "{\"a\":1}", "[]"]
        let spec = Gen.int(in: 0...100).array(of: 1...40)
        await propertyCheck(count: 500, input: Gen.int(in: 0...(shapes.count - 1)), spec) { shape, spec in
            var next = spec.makeIterator()
            func pick(_ n: Int) -> Int { (next.next() ?? 0) % n }
            // A value that mostly has the declared shape, sometimes not (another length, a leaf
            // of another kind, a dimension too many or too few).
            func value(_ dims: ArraySlice<Int?>) -> String {
                guard let dim = dims.first, pick(12) != 0 else {
                    return pick(6) == 0 ? leaves[pick(leaves.count)] : ["1", "2.5", "\"x\"", "true"][pick(4)]
                }
                var count = dim ?? (1 + pick(3))
                if pick(10) == 0 { count += 1 }
                return " [ " + (0..<count).map { _ in value(dims.dropFirst()) }.joined(separator: " , ") + " ]"
            }
            let type = DataType.ndarray(shape: shapes[shape], item: nil)
            let text = value(shapes[shape][...])
            let bytes = Array(("{\"input\": " + text + "}").utf8)
            guard let request = try? RunRequest.read(bytes, maxInputs: 10), let value = try? JSONValue.parse(Array(text.utf8)) else {
                Issue.record("generated an unreadable body: \(text)")
                return
            }
            #expect(request.problem(bytes, type: type) == type.check(value, at: "input"), "\(text) against \(shapes[shape])")
        }
    }
}
