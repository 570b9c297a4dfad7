import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// `dlhub run --inputs big.jsonl --output out.jsonl`: any number of inputs, bounded memory,
/// progress, and a resume after an interrupt that redoes nothing.
extension ClusterServingTests {
    @Suite struct BulkRunTests {
        init() throws {
            try TestUsers.require()
            try DevCluster.require()
        }

        @Test func aHundredThousandLineFileRunsInBoundedMemoryAndResumesAfterAnInterrupt() async throws {
            let h = try await ServingHarness()
            defer { h.stop() }
            let dir = try ServingFixtures.pythonModule(
                in: h.work.path, name: "summer", module: "summer", code: "def total(xs, scale=1):\n    return scale * sum(xs)\n",
                function: "total", input: ["type": "list", "item_type": ["type": "float"]], output: ["type": "float"], maxBatchSize: 256)
            let id = try await h.publish(dir)
            func dispatched() async throws -> Int { try await h.metric("dlhub_items_dispatched_total") }
            #expect(try await h.api.run(id, ["input": [1.5, 2.5]]).json["output"] == 4.0, "a resident worker first")
            let before = try await dispatched()

            // 100,000 inputs of 20 numbers each (about 19 MB), and a blank line, which is skipped.
            let count = 100_000
            let input = h.work.path + "/inputs.jsonl"
            let output = h.work.path + "/out.jsonl"
            var text = ""
            text.reserveCapacity(20 << 20)
            for i in 0..<count {
                text += "[" + (0..<20).map { j in String(Double(i) + Double(j) / 8) }.joined(separator: ",") + "]\n"
                if i == 500 { text += "\n" }
            }
            try text.write(toFile: input, atomically: true, encoding: .utf8)
            let dlhub = try TestInstall.executable("dlhub")
            let env = ["DLHUB_URL": h.service.url, "PATH": "/usr/bin:/bin", "HOME": h.work.path]
            let args = ["run", id, "--inputs", input, "--output", output, "--param", "scale=2"]

            // Interrupted part of the way through.
            let first = Process()
            first.executableURL = URL(fileURLWithPath: dlhub)
            first.arguments = args
            first.environment = env
            first.standardError = FileHandle.nullDevice
            first.standardOutput = FileHandle.nullDevice
            try first.run()
            let deadline = Date().addingTimeInterval(300)
            func doneSoFar() -> Int {
                guard let data = FileManager.default.contents(atPath: output + ".progress"), let j = try? JSONValue.parse(Array(data))
                else {
                    return 0
                }
                return Int(j["done"]?.intValue ?? 0)
            }
            while first.isRunning, doneSoFar() < 20_000, Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
            #expect(first.isRunning, "interrupted before it finished")
            first.interrupt()
            first.waitUntilExit()
            let doneAtInterrupt = doneSoFar()
            #expect(doneAtInterrupt >= 20_000 && doneAtInterrupt < count, "\(doneAtInterrupt)")

            // The same command again resumes; its peak memory is measured.
            let resumed = try Subprocess.run("/usr/bin/time", ["-f", "maxrss_kb=%M", dlhub] + args, environment: env)
            #expect(resumed.status == 0, "\(resumed.stderr)")
            #expect(resumed.stderr.contains("resuming: \(doneAtInterrupt) input(s) already in"), "\(resumed.stderr)")
            #expect(resumed.stderr.contains("100000/100000 inputs (100%)"), "a plain progress line when stderr is no terminal")
            #expect(resumed.stderr.contains("100000 input(s) answered into"))
            let rss = resumed.stderr.split(separator: "\n").first { $0.hasPrefix("maxrss_kb=") }.flatMap { Int($0.dropFirst(10)) } ?? 0
            print("bulk run of 80,000+ inputs (19 MB file): peak RSS \(rss) KB")
            #expect(rss > 0 && rss < 150_000, "peak memory \(rss) KB for a 19 MB input file: it must not hold the file")
            #expect(!FileManager.default.fileExists(atPath: output + ".progress"))

            // One line per input, in order, each right.
            let lines = try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n")
            #expect(lines.count == count)
            var wrong = 0
            for (i, line) in lines.enumerated() {
                let expected = 2 * (0..<20).reduce(0.0) { $0 + Double(i) + Double($1) / 8 }
                let got = (try? JSONValue.parse(String(line)))?["output"]?.doubleValue ?? .nan
                if abs(got - expected) > 1e-6 * max(1, abs(expected)) { wrong += 1 }
            }
            #expect(wrong == 0, "\(wrong) wrong lines")
            // Nothing was computed twice: the chunks submitted before the interrupt were collected, not sent again.
            let sent = try await dispatched() - before
            #expect(sent == count, "\(sent) items dispatched for \(count) inputs")

            // A bad line stops the run with its number, and nothing after it is sent.
            try "[1.0]\n[2.0]\nnot json\n[4.0]\n".write(toFile: input, atomically: true, encoding: .utf8)
            let bad = try Subprocess.run(dlhub, ["run", id, "--inputs", input, "--output", output, "--restart"], environment: env)
            #expect(bad.status != 0)
            #expect(bad.stderr.contains("input 3 is not valid JSON"), "\(bad.stderr)")
        }
    }
}
