import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// Per-servable environments: Python environments the service builds, Lmod modules, containers.
extension ClusterServingTests {
    @Suite struct EnvironmentEndToEndTests {
        init() throws {
            try TestUsers.require()
            try DevCluster.require()
        }

        func metric(_ h: ServingHarness, _ name: String) async throws -> Int {
            let text = try await h.api.send("GET", "/metrics").json.stringValue ?? ""
            let line = text.split(separator: "\n").first { $0.hasPrefix(name + " ") }
            return line.flatMap { Int(Double($0.split(separator: " ").last ?? "") ?? -1) } ?? 0
        }

        @Test func onePilotServesTwoScikitLearnVersionsEachInItsOwnEnvironment() async throws {
            let h = try await ServingHarness(pools: [ServingHarness.pool("cpu", max: 1)])
            defer { h.stop() }
            // Two incompatible scikit-learn releases (numpy 1 and numpy 2 worlds), each with the
            // model trained under it and reference answers computed in-process under it.
            let versions: [(String, [String: String])] = [
                ("1.3.2", ["scikit-learn": "1.3.2", "numpy": "1.26.4"]), ("1.5.2", ["scikit-learn": "1.5.2"]),
            ]
            let rows: JSONValue = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
            var cases: [(version: String, model: String, probe: String, expected: JSONValue)] = []
            for (version, deps) in versions {
                let python = try TestEnvironments.python(deps)
                let tag = version.replacing(".", with: "_")
                let modelDir = try ServingFixtures.irisProbabilities(
                    in: h.work.path, name: "iris-\(tag)", python: python, dependencies: deps)
                let expected = try TestEnvironments.evaluate(
                    python,
                    "import joblib, json, sys; m = joblib.load(sys.argv[1]); print(json.dumps(m.predict_proba(json.loads(sys.argv[2])).tolist()))",
                    [modelDir + "/model.joblib", rows.encodedString()])
                // A second servable with the same dependency set: it must share the first one's environment.
                let probeDir = try ServingFixtures.pythonModule(
                    in: h.work.path, name: "version-\(tag)", module: "probe",
                    code: "import sklearn, numpy\ndef versions(x):\n    return sklearn.__version__ + ' ' + numpy.__version__\n",
                    function: "versions", dependencies: deps)
                cases.append((version, try await h.publish(modelDir), try await h.publish(probeDir), expected))
            }
            // All at once, on the one pilot.
            let answers = try await withThrowingTaskGroup(of: (Int, JSONValue?, JSONValue?).self) { group in
                for (i, c) in cases.enumerated() {
                    group.addTask {
                        async let prediction = h.api.run(c.model, ["input": rows], wait: 600)
                        async let probe = h.api.run(c.probe, ["input": "x"], wait: 600)
                        return (i, try await prediction.json["output"], try await probe.json["output"])
                    }
                }
                var out: [Int: (JSONValue?, JSONValue?)] = [:]
                for try await (i, p, v) in group { out[i] = (p, v) }
                return out
            }
            for (i, c) in cases.enumerated() {
                #expect(answers[i]?.0 == c.expected, "scikit-learn \(c.version): \(String(describing: answers[i]?.0))")
                #expect(answers[i]?.1?.stringValue?.hasPrefix(c.version + " ") == true, "\(String(describing: answers[i]?.1))")
            }
            #expect(answers[0]?.1?.stringValue?.hasSuffix(" 1.26.4") == true)
            let jobs = try h.slurmJobs(pool: "cpu")
            #expect(jobs.count == 1, "\(jobs)")
            // Four servables, two dependency sets: two builds.
            #expect(try await metric(h, "dlhub_environment_builds_total") == 2)
            let listed = try await h.api.send("GET", "/v1/environments").json["environments"]?.arrayValue ?? []
            #expect(listed.count == 2)
            #expect(listed.allSatisfy { $0["state"] == "ready" })
        }

        @Test func aRequestWaitsVisiblyWhileItsEnvironmentBuildsAndAFailedBuildSaysWhy() async throws {
            let index = try LocalPackageIndex(delay: 8)
            defer { index.stop() }
            let h = try await ServingHarness(
                pools: [ServingHarness.pool("cpu", max: 1)], extraConfig: ["package_index": .string(index.url)])
            defer { h.stop() }
            let code = "import dlhub_test_greeting\ndef run(x):\n    return dlhub_test_greeting.greet(x)\n"
            let id = try await h.publish(
                try ServingFixtures.pythonModule(
                    in: h.work.path, name: "greeter", module: "greeter", code: code, function: "run",
                    dependencies: ["dlhub-test-greeting": "1.0"]))
            // Building: describe says so, and a request waits with that state.
            let cli = try CLI(service: h.service)
            let describe = try cli.run(as: "root", ["describe", id])
            #expect(describe.stdout.contains("dlhub-test-greeting==1.0 (building environment"), "\(describe.stdout)")
            let early = try await h.api.send("POST", "/v1/servables/\(id)/run?wait=1", json: ["input": "ada"])
            #expect(early.status == 202)
            #expect(early.json["status"] == "building_environment", "\(early.json)")
            #expect(early.json["waiting_for"]?["environment"]?["packages"] == ["dlhub-test-greeting==1.0"])
            let run = try cli.run(as: "root", ["run", id, "--input", "\"grace\""])
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdout.contains("hello, grace"))
            #expect(run.stderr.contains("building the servable's Python environment"), "\(run.stderr)")
            let task = try #require(early.json["id"]?.stringValue)
            #expect(try await h.api.send("GET", "/v1/tasks/\(task)?wait=60").json["output"] == "hello, ada")

            // The same dependency set again: no second build.
            let again = try await h.publish(
                try ServingFixtures.pythonModule(
                    in: h.work.path, name: "greeter-too", module: "greeter", code: code, function: "run",
                    dependencies: ["dlhub-test-greeting": "1.0"]))
            #expect(try await h.api.run(again, ["input": "alan"]).json["output"] == "hello, alan")
            #expect(try await metric(h, "dlhub_environment_builds_total") == 1)
            // (The failed build below is the second.)

            // A version the index does not have: the installer's own words reach the caller and describe.
            let broken = try await h.publish(
                try ServingFixtures.pythonModule(
                    in: h.work.path, name: "greeter-broken", module: "greeter", code: code, function: "run",
                    dependencies: ["dlhub-test-greeting": "9.9"]))
            let failed = try await h.api.run(broken, ["input": "x"], wait: 120)
            #expect(failed.json["status"] == "failed")
            let error = failed.json["error"]?.stringValue ?? ""
            #expect(error.contains("building the Python environment for dlhub-test-greeting==9.9 failed"), "\(error)")
            #expect(error.contains("dlhub-test-greeting") && error.contains("9.9") && error.lowercased().contains("no version"), "\(error)")
            let describeBroken = try cli.run(as: "root", ["describe", broken])
            #expect(describeBroken.stdout.contains("FAILED"), "\(describeBroken.stdout)")

            // Environments are for admins to manage; bob may not.
            #expect(try cli.run(as: "root", ["env", "ls"]).stdout.contains("dlhub-test-greeting==1.0"))
            let listed = try JSONValue.parse(try cli.run(as: "root", ["env", "ls", "--json"]).stdout)["environments"]?.arrayValue ?? []
            let envID = try #require(listed.first { $0["packages"] == ["dlhub-test-greeting==1.0"] }?["id"]?.stringValue)
            let rebuilt = try cli.run(as: "root", ["env", "rebuild", envID])
            #expect(rebuilt.status == 0 && rebuilt.stdout.contains("rebuilding \(envID)"), "\(rebuilt.stderr)")
            let deadline = Date().addingTimeInterval(120)
            var state = ""
            while Date() < deadline, state != "ready" {
                try await Task.sleep(for: .seconds(1))
                let now = try JSONValue.parse(try cli.run(as: "root", ["env", "ls", "--json"]).stdout)["environments"]?.arrayValue ?? []
                state = now.first { $0["id"]?.stringValue == envID }?["state"]?.stringValue ?? ""
            }
            #expect(state == "ready")
            #expect(try await h.api.run(again, ["input": "rebuilt"]).json["output"] == "hello, rebuilt")
            #expect(try await metric(h, "dlhub_environment_builds_total") == 3, "the first, the failed one, the rebuild")
            let bob = try cli.run(as: TestUsers.bob, ["env", "ls"])
            #expect(bob.status != 0)
            #expect(bob.stderr.contains("only the site's admins"))
        }

        @Test func aModulesServableGetsWhatItsModulePutsOnItsPath() async throws {
            let work = try TemporaryDirectory("dlhub-modules")
            let tool = work.file("tool/bin")
            try FileManager.default.createDirectory(atPath: tool, withIntermediateDirectories: true)
            try "#!/bin/sh\necho \"the tool says $1\"\n".write(toFile: tool + "/dlhub-test-tool", atomically: true, encoding: .utf8)
            chmod(tool + "/dlhub-test-tool", 0o755)
            try FileManager.default.createDirectory(atPath: work.file("modulefiles/dlhub-test-tool"), withIntermediateDirectories: true)
            try """
            prepend_path("PATH", "\(tool)")
            setenv("DLHUB_TEST_TOOL_HOME", "\(work.file("tool"))")
            """.write(toFile: work.file("modulefiles/dlhub-test-tool/1.0.lua"), atomically: true, encoding: .utf8)
            let h = try await ServingHarness(
                pools: [ServingHarness.pool("cpu", max: 1)], extraConfig: ["modulepath": [.string(work.file("modulefiles"))]])
            defer { h.stop() }
            let code = """
                import os, subprocess
                def run(x):
                    said = subprocess.run(["dlhub-test-tool", x], capture_output=True, text=True, check=True).stdout.strip()
                    return said + " from " + os.environ.get("DLHUB_TEST_TOOL_HOME", "nowhere")
                """
            let id = try await h.publish(
                try ServingFixtures.pythonModule(
                    in: h.work.path, name: "tooled", module: "tooled", code: code, function: "run",
                    environment: ["type": "modules", "modules": ["dlhub-test-tool/1.0"]]))
            let reply = try await h.api.run(id, ["input": "hi"])
            #expect(reply.json["output"] == .string("the tool says hi from \(work.file("tool"))"), "\(reply.json)")
            // A module the site does not have: Lmod's complaint, not a hang.
            let missing = try await h.publish(
                try ServingFixtures.pythonModule(
                    in: h.work.path, name: "untooled", module: "tooled", code: code, function: "run",
                    environment: ["type": "modules", "modules": ["no-such-module/9"]]))
            let failed = try await h.api.run(missing, ["input": "hi"])
            #expect(failed.json["status"] == "failed")
            #expect(failed.json["error"]?.stringValue?.contains("module load no-such-module/9 failed") == true, "\(failed.json)")
        }

        @Test func aContainerWhoseImageIsMissingAndASandboxThatDoesNotWorkAreClearErrors() async throws {
            let h = try await ServingHarness(pools: [ServingHarness.pool("cpu", max: 1)])
            let id = try await h.publish(
                try ServingFixtures.pythonModule(
                    in: h.work.path, name: "boxed", module: "boxed", code: "def run(x):\n    return x\n", function: "run",
                    environment: ["type": "container", "image": "/nonexistent/images/boxed.sif"]))
            let reply = try await h.api.run(id, ["input": "x"])
            #expect(reply.json["status"] == "failed")
            #expect(
                reply.json["error"]?.stringValue?.contains("the container image /nonexistent/images/boxed.sif does not exist") == true,
                "\(reply.json)")
            h.stop()

            // The site requires bubblewrap, and on these nodes it does not work.
            let broken = try await ServingHarness(
                pools: [ServingHarness.pool("cpu", max: 1)], extraConfig: ["bubblewrap": "/usr/bin/false"])
            defer { broken.stop() }
            let plain = try await broken.publish(
                try ServingFixtures.pythonModule(
                    in: broken.work.path, name: "plain", module: "plain", code: "def run(x):\n    return x\n", function: "run"))
            let refused = try await broken.api.run(plain, ["input": "x"])
            #expect(refused.json["status"] == "failed")
            let error = refused.json["error"]?.stringValue ?? ""
            #expect(error.contains("the site runs workers in a bubblewrap sandbox, but it does not work on node"), "\(error)")
            let pilots = try await broken.pilots()
            #expect(pilots.first?["isolation"]?.stringValue?.contains("unavailable") == true, "\(pilots)")
        }
    }
}
