import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// `/metrics` as Prometheus reads it (its own Python parser), with the histograms an admin asks
/// for after traffic, and every metric the shipped Grafana dashboard uses.
extension ClusterServingTests {
    @Suite struct MetricsEndToEndTests {
        init() throws { try DevCluster.require() }

        @Test func metricsParseAndHoldTheHistogramsAndEverythingTheDashboardUses() async throws {
            let h = try await ServingHarness()
            defer { h.stop() }
            let dir = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "counted", function: "behave", input: ["type": "string"], output: ["type": "string"])
            let id = try await h.publish(dir)
            for i in 0..<10 { #expect(try await h.api.run(id, ["input": .string("x\(i)")]).status == 200) }
            // A private servable is served too, but /metrics (which anyone may read) does not name it.
            let hidden = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "unreleased_secret", function: "behave", input: ["type": "string"], output: ["type": "string"])
            var doc = try JSONValue.parse(Array(FileManager.default.contents(atPath: hidden + "/servable.json")!))
            doc = doc.setting(["dlhub", "visible_to"], to: ["user:root"])
            _ = FileManager.default.createFile(atPath: hidden + "/servable.json", contents: Data(doc.encoded(pretty: true)))
            let hiddenID = try await h.publish(hidden)
            #expect(try await h.api.run(hiddenID, ["input": "z"]).status == 200)
            #expect(try await h.api.run(id, ["inputs": .array((0..<30).map { .string("y\($0)") })]).status == 200)
            // The pilot gauge is refreshed each second by the pilot manager: read once it has seen the running job.
            var text = ""
            let deadline = Date().addingTimeInterval(20)
            repeat {
                text = try await h.api.send("GET", "/metrics").json.stringValue ?? ""
                if text.contains("dlhub_pilots{pool=\"\(h.pool("cpu"))\",state=\"running\"} 1")
                    || text.contains("dlhub_pilots{state=\"running\",pool=\"\(h.pool("cpu"))\"} 1")
                {
                    break
                }
                try await Task.sleep(for: .milliseconds(250))
            } while Date() < deadline
            let tools = (ProcessInfo.processInfo.environment["DLHUB_TOOLS_ENV"] ?? "/opt/dlhub-dev/tools") + "/bin/python"
            let parse = try Subprocess.run(
                tools,
                [
                    "-c",
                    """
                    import json, sys
                    from prometheus_client.parser import text_string_to_metric_families
                    out = {}
                    for family in text_string_to_metric_families(sys.stdin.read()):
                        out[family.name] = {"type": family.type, "samples": [[s.name, s.labels, s.value] for s in family.samples]}
                    print(json.dumps(out))
                    """,
                ], input: Data(text.utf8))
            #expect(parse.status == 0, "\(parse.stderr)")
            #expect(!text.contains("unreleased_secret"), "a private servable's name is in /metrics")
            #expect(text.contains("servable=\"private:"), "a private servable's histograms are labelled by digest")
            let families = try JSONValue.parse(parse.stdout)
            func samples(_ family: String, _ name: String) -> [JSONValue] {
                (families[family]?["samples"]?.arrayValue ?? []).filter { $0.arrayValue?.first?.stringValue == name }
            }
            let servable = "root/counted"
            for family in ["dlhub_request_seconds", "dlhub_queue_wait_seconds"] {
                #expect(families[family]?["type"] == "histogram", "\(family) missing or not a histogram")
                let count = samples(family, family + "_count").first { $0.arrayValue?[1]["servable"]?.stringValue == servable }
                #expect((count?.arrayValue?[2].doubleValue ?? 0) >= 40, "\(family) counts every input: \(count ?? .null)")
            }
            #expect(families["dlhub_batch_size"]?["type"] == "histogram")
            #expect((samples("dlhub_batch_size", "dlhub_batch_size_count").first?.arrayValue?[2].doubleValue ?? 0) >= 2)
            let pilots = samples("dlhub_pilots", "dlhub_pilots").filter {
                $0.arrayValue?[1]["pool"]?.stringValue == h.pool("cpu") && $0.arrayValue?[1]["state"] == "running"
            }
            #expect((pilots.first?.arrayValue?[2].doubleValue ?? 0) >= 1, "\(families["dlhub_pilots"] ?? .null)")
            let build = samples("dlhub_build_info", "dlhub_build_info").first
            #expect(build?.arrayValue?[1]["version"]?.stringValue == DLHubVersion.current)

            // Every metric the dashboard queries exists.
            let dashboard = try String(contentsOfFile: BuiltProducts.packageRoot + "/share/dlhub/grafana/dlhub.json", encoding: .utf8)
            let names = Set(
                dashboard.split(whereSeparator: { !($0.isLetter || $0 == "_") }).filter { $0.hasPrefix("dlhub_") }.map { word -> String in
                    var name = String(word)
                    for suffix in ["_bucket", "_count", "_sum", "_total"] where name.hasSuffix(suffix) { name.removeLast(suffix.count) }
                    return name
                })
            #expect(names.count >= 10)
            let known = Set((families.objectValue ?? [:]).keys)
            #expect(
                names.subtracting(known).isEmpty, "the dashboard uses metrics /metrics does not have: \(names.subtracting(known).sorted())")
        }
    }
}
