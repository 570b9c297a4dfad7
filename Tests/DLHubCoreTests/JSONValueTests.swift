import DLHubCore
import Testing

@Suite struct JSONValueTests {
    @Test func roundTripsAndSortsKeys() throws {
        let text = #"{"b": [1, 2.5, "x\n\"y\"", null, true], "a": {"z": -3, "é": "ü"}}"#
        let value = try JSONValue.parse(text)
        #expect(value.encodedString() == #"{"a":{"z":-3,"é":"ü"},"b":[1,2.5,"x\n\"y\"",null,true]}"#)
        #expect(try JSONValue.parse(value.encoded()) == value)
    }

    @Test func keepsIntegersApartFromFloats() throws {
        let value = try JSONValue.parse("[3, 3.0, 1e2]")
        #expect(value == [.int(3), .double(3), .double(100)])
        #expect(value.encodedString() == "[3,3.0,100.0]")
    }

    @Test(arguments: ["{", "[1,]", "{\"a\" 1}", "tru", "\"unterminated", "[1] 2", "01x"])
    func rejectsMalformedText(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(text) }
    }

    @Test func decodesUnicodeEscapes() throws {
        #expect(try JSONValue.parse(#""\u00e9\ud83d\ude00""#) == .string("é😀"))
    }
}
