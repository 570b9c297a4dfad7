import DLHubCore
import Testing

@Suite struct JSONScannerTests {
    static let documents = [
        #"{"b": [1, 2.5, "x\n\"y\"", null, true], "a": {"z": -3e+2, "é": "ü\u00e9\ud83d\ude00"}}"#,
        #"[[5.1,3.5,1.4,0.2],[6.2,2.9,4.3,1.3]]"#, #""just a string""#, "-0.5e-3", "false",
        #"{"results":[{"output":[0.1,0.9]},{"error":"boom"}]}"#,
        "[]", "{}", #"[{"a":[{}]}]"#,
    ]

    /// The scanner accepts exactly what the parser accepts: the documents, every truncation of
    /// them, and every one-byte change to a character that matters in JSON.
    @Test func agreesWithTheParserOnEveryTextNearValidJSON() {
        var texts: [[UInt8]] = Self.documents.map { Array($0.utf8) }
        texts += [
            "{", "[1,]", "{\"a\" 1}", "tru", "\"unterminated", "[1] 2", "01x", #""\ud800""#, #""\udc00""#, #""\u12""#, "- 1", "1.", "1e",
        ]
        .map { Array($0.utf8) }
        let noise = Array(#"{}[],:"\ -.e0tfnu"#.utf8) + [0x00, 0x0A, 0xFF]
        for document in Self.documents.map({ Array($0.utf8) }) {
            for end in 0..<document.count { texts.append(Array(document[..<end])) }
            for i in document.indices {
                for b in noise {
                    var changed = document
                    changed[i] = b
                    texts.append(changed)
                }
            }
        }
        for text in texts {
            let parsed = (try? JSONValue.parse(text)) != nil
            let scanned = JSONScanner.wholeValue(text) != nil
            #expect(parsed == scanned, "\(String(decoding: text, as: UTF8.self))")
        }
    }

    @Test func refusesNestingTheParserRefuses() {
        let deep = Array(repeating: UInt8(ascii: "["), count: 600) + Array(repeating: UInt8(ascii: "]"), count: 600)
        #expect(JSONScanner.wholeValue(deep) == nil)
        #expect((try? JSONValue.parse(deep)) == nil)
    }

    @Test func findsMembersAndElementsAsWritten() throws {
        let text = Array(#" { "batch" : 7, "results" : [ {"output": [1, 2]} , {"error":"x"} ] } "#.utf8)
        var scanner = JSONScanner(text)
        let found = scanner.objectMembers()
        let members = try #require(found)
        #expect(members.map { String(decoding: $0.key, as: UTF8.self) } == ["batch", "results"])
        let elements = try #require(JSONScanner.arrayElements(text, in: members[1].value))
        #expect(elements.map { String(decoding: text[$0], as: UTF8.self) } == [#"{"output": [1, 2]}"#, #"{"error":"x"}"#])
    }
}
