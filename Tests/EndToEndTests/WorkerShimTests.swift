import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// The Python worker shim driven directly over its protocol (no pilot): vectorized batches give
/// the same answers as inputs run one at a time, and a bad input still fails alone.
@Suite struct WorkerShimTests {
    static var shim: String { BuiltProducts.packageRoot + "/python/dlhub_worker.py" }

    /// Sends each batch as one protocol line and returns the reply lines after `ready`, and stderr.
    static func converse(_ directory: String, _ batches: [[JSONValue]]) throws -> (replies: [JSONValue], stderr: String) {
        try TestInstall.require()
        let lines = batches.enumerated().map { i, inputs in
            String(decoding: JSONValue.object(["batch": .int(Int64(i)), "inputs": .array(inputs)]).encoded(), as: UTF8.self) + "\n"
        }
        let result = try Subprocess.run(
            TestInstall.workerPython, [shim, directory], environment: ["PATH": "/usr/bin:/bin", "HOME": "/tmp"],
            input: Data(lines.joined().utf8))
        let replies = try result.stdout.split(separator: "\n").map { try JSONValue.parse(Array($0.utf8)) }
        try #require(replies.first?["ready"]?.boolValue == true, "the worker did not start: \(result.stderr)")
        return (Array(replies.dropFirst()), result.stderr)
    }

    @Test func scikitLearnBatchesAreOneCallWithTheSameAnswers() throws {
        let dir = try TemporaryDirectory("dlhub-shim")
        let servable = try ServingFixtures.irisProbabilities(
            in: dir.path, name: "iris", python: TestInstall.workerPython, dependencies: [:])
        let rows: [JSONValue] = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5], [6.3, 3.3, 6.0, 2.5]]
        // Inputs of one, two and three rows; then the same inputs one per batch (never vectorized).
        let inputs: [JSONValue] = [[rows[0]], [rows[1], rows[2]], [rows[3], rows[0], rows[1]]]
        let (replies, stderr) = try Self.converse(servable, [inputs] + inputs.map { [$0] })
        try #require(replies.count == 4, "\(stderr)")
        let together = try #require(replies[0]["results"]?.arrayValue)
        #expect(together.count == 3)
        for (i, alone) in replies.dropFirst().enumerated() {
            let expected = try #require(alone["results"]?.arrayValue?.first?["output"], "\(alone)")
            // Equal up to rounding: the BLAS may sum a block of rows in another order.
            #expect(Self.close(together[i]["output"], expected), "input \(i): \(together[i]) vs \(expected)")
            #expect(together[i]["output"]?.arrayValue?.count == inputs[i].arrayValue?.count)
        }

        // A malformed input (two columns) in a batch fails alone; its neighbours are answered.
        let (mixed, _) = try Self.converse(servable, [[[rows[0]], [[1.0, 2.0]], [rows[3]]]])
        let results = try #require(mixed.first?["results"]?.arrayValue)
        #expect(results.count == 3)
        #expect(Self.close(results[0]["output"], together[0]["output"]))
        #expect(results[1]["error"]?.stringValue?.contains("feature") == true, "\(results[1])")
        #expect(results[2]["output"] != nil)
    }

    /// Same shape, numbers within 1e-12 of each other.
    static func close(_ a: JSONValue?, _ b: JSONValue?) -> Bool {
        switch (a, b) {
        case (let x?, let y?):
            if let xs = x.arrayValue, let ys = y.arrayValue {
                return xs.count == ys.count && zip(xs, ys).allSatisfy { close($0, $1) }
            }
            if let p = x.doubleValue, let q = y.doubleValue { return abs(p - q) <= 1e-12 * max(1, abs(p), abs(q)) }
            return x == y
        default: return false
        }
    }

    @Test func aDeclaredBatchMethodTakesTheWholeBatchAndFallsBackPerInput() throws {
        let dir = try TemporaryDirectory("dlhub-shim")
        let code = """
            import sys

            def double(x):
                if x == 13:
                    raise ValueError("unlucky")
                return 2 * x

            def double_all(xs):
                print("batch of %d" % len(xs), file=sys.stderr)
                return [double(x) for x in xs]
            """
        let servable = try ServingFixtures.pythonModule(
            in: dir.path, name: "doubler", module: "doubler", code: code, function: "double", input: ["type": "integer"],
            output: ["type": "integer"])
        let path = servable + "/servable.json"
        let doc = try JSONValue.parse(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
            .setting(["servable", "methods", "run", "method_details", "batch_method_name"], to: "double_all")
        try Data(doc.encoded()).write(to: URL(fileURLWithPath: path))

        let (replies, stderr) = try Self.converse(servable, [[1, 2, 3], [4, 13, 5]])
        #expect(stderr.contains("batch of 3"), "the batch method was not called: \(stderr)")
        #expect(replies[0]["results"] == [["output": 2], ["output": 4], ["output": 6]])
        let second = try #require(replies[1]["results"]?.arrayValue)
        #expect(second[0] == ["output": 8])
        #expect(second[1]["error"]?.stringValue == "ValueError: unlucky")
        #expect(second[2] == ["output": 10])

        // Turned off by the servable: no batch call.
        let off = doc.setting(["servable", "batching", "vectorize"], to: false)
        try Data(off.encoded()).write(to: URL(fileURLWithPath: path))
        let (plain, plainErr) = try Self.converse(servable, [[1, 2, 3]])
        #expect(!plainErr.contains("batch of"))
        #expect(plain[0]["results"] == [["output": 2], ["output": 4], ["output": 6]])
    }
}
