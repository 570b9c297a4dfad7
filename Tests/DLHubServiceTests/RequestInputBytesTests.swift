import DLHubCore
import Testing

@testable import DLHubService

/// Inputs go to the worker as the caller wrote them, minified: whatever a request holds, each
/// forwarded input is the same JSON value the service checked, on one line (the worker protocol
/// is a line per batch), with strings left exactly as they were.
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
        let request = try JSONValue.parse(body)
        let single = request["input"] != nil
        let expected = single ? [request["input"]!] : try #require(request["inputs"]?.arrayValue)
        let forwarded = try #require(Runner.inputBytes(body, single: single))
        #expect(forwarded.count == expected.count)
        for (bytes, value) in zip(forwarded, expected) {
            #expect(!bytes.contains(0x0A) && !bytes.contains(0x0D), "\(String(decoding: bytes, as: UTF8.self))")
            #expect(try JSONValue.parse(bytes) == value)
        }
    }
}
