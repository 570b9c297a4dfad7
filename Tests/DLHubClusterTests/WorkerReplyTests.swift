import DLHubCore
import Testing

@testable import DLHubPilot

/// The pilot forwards each output a worker writes without parsing it into a tree: a hostile
/// servable's reply must still never put anything but one well-formed JSON value per input into
/// what the service splices into its callers' answers (the batch may hold other users' inputs).
@Suite struct WorkerReplyTests {
    static func outcomes(_ text: String) -> [ItemResult.Outcome]? { PilotAgent.outcomes(Array(text.utf8)) }

    @Test func forwardsOutputsAsWrittenAndErrorsAsText() throws {
        let outcomes = try #require(
            Self.outcomes(#"{"batch":3,"results":[{"output":[0.25, 1e-3]},{"error":"ValueError: bad row"},{"x":1},7]}"#))
        #expect(outcomes.count == 4)
        guard case .output(let bytes) = outcomes[0], case .error(let message) = outcomes[1] else {
            Issue.record("expected an output and an error: \(outcomes)")
            return
        }
        #expect(String(decoding: bytes, as: UTF8.self) == "[0.25, 1e-3]")
        #expect(message == "ValueError: bad row")
        for other in outcomes[2...] {
            guard case .error(let m) = other else { Issue.record("expected an error: \(other)"); continue }
            #expect(m.contains("neither output nor error"))
        }
    }

    @Test(arguments: [
        #"{"results":[{"output":[1,}]}"#,  // malformed output
        #"{"results":[{"output":1}]} {"results":[{"output":2}]}"#,  // a second reply glued on
        #"{"results":[{"output":1}], "results2": [}"#,  // malformed sibling member
        #"{"results":[{"output":"a\u0000"}]"#,  // unterminated reply
        #"{"results":{"output":1}}"#,  // results not a list
        #"{"results":[{"output":tru}]}"#,
        #"{"results":[{"output":"\ud800"}]}"#,  // lone surrogate
        #"{"results":[{"output":1}]}"# + "\u{0}",
        "[" + String(repeating: "[", count: 600) + "]",
    ])
    func aReplyThatIsNotWellFormedJSONIsAProtocolError(_ text: String) {
        #expect(Self.outcomes(text) == nil)
    }

    /// Outputs built to break out of their place in an answer stay one JSON value each.
    @Test func everyForwardedOutputIsOneJSONValue() throws {
        let tricky = [
            #"{"results":[{"output":"\"]}, {\"output\": 1"},{"output":{"k":"]}"}}]}"#,
            #"{"results":[{"output":[1,2] }, {"output" : {"a":[{"b":null}]}}]}"#,
            #"{"results":[{"output":1,"output":[2]}]}"#,
        ]
        for text in tricky {
            let outcomes = try #require(Self.outcomes(text))
            for case .output(let bytes) in outcomes {
                #expect((try? JSONValue.parse(bytes)) != nil, "\(String(decoding: bytes, as: UTF8.self))")
            }
        }
    }
}
