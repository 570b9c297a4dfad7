import DLHubCore
import PropertyBased
import Testing

@testable import DLHubService

/// The answer's head is written by hand for speed; it must be the bytes the JSON writer gives.
@Suite struct TaskAnswerTests {
    @Test func theHandWrittenHeadIsTheWritersBytes() async {
        let texts = ["", "a", "root/iris@1", "quote \" slash \\ tab \t", "\u{e9}\u{1F600}", "\u{1}"]
        let numbers: [Double] = [0, 1, 1796653414.0170493, 0.1, 1e-7, 123456789012345.0, 1e20, -3]
        let pick = Gen.int(in: 0...1000).array(of: 16...16)
        await propertyCheck(count: 500, input: pick) { p in
            func text(_ i: Int) -> String { texts[p[i] % texts.count] }
            func number(_ i: Int) -> Double { numbers[p[i] % numbers.count] }
            func maybe<T>(_ i: Int, _ value: T) -> T? { p[i] % 3 == 0 ? nil : value }
            var document = TaskDocument(
                id: text(0), servable: text(1), digest: text(2), status: text(3), created: number(4), items: p[5],
                remaining: p[6] % 5, finished: maybe(7, number(8)), cancelled: maybe(9, number(10)))
            document.cancelledItems = maybe(11, p[12])
            document.runningItems = maybe(13, p[14] % 7)
            if p[15] % 4 == 0 { document.location = "/v1/tasks/x" }  // the writer's own path
            var expected = document.json.encoded()
            expected.removeLast()
            #expect(TaskAnswer.head(document) == expected, "\(String(decoding: expected, as: UTF8.self))")
        }
    }
}
