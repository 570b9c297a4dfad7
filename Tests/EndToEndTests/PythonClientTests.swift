import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// The Python client, `dlhub_slurm`, as a scientist uses it: installed with `scripts/install`,
/// found after `module load dlhub` by the system's plain `python3`, run as ordinary Unix users.
extension ClusterServingTests {
    @Suite struct PythonClientTests {
        init() throws {
            try TestUsers.require()
            try DevCluster.require()
        }

        /// A module-loaded login shell of `user` running `script` (bash).
        static func shell(as user: String, prefix: String, _ script: String, directory: String? = nil) throws -> Subprocess.Result {
            let lmodInit = ["/usr/share/lmod/lmod/init/bash", "/usr/share/lmod/8.6.19/init/bash"].first {
                FileManager.default.fileExists(atPath: $0)
            }
            let initScript = try #require(lmodInit, "Lmod is not installed: run slurm/install-deps")
            let full = """
                source \(initScript)
                module use \(prefix)/modulefiles
                module load dlhub
                \(script)
                """
            return try Subprocess.run(
                as: user, "/bin/bash", ["-c", full], environment: ["PATH": "/usr/local/bin:/usr/bin:/bin"], directory: directory)
        }

        static func install(registry: String) throws -> TemporaryDirectory {
            let prefix = try TemporaryDirectory("dlhub-prefix")
            let debug = URL(fileURLWithPath: try BuiltProducts.path("dlhub")).deletingLastPathComponent().path
            let install = try Subprocess.run(
                "/bin/bash",
                [
                    BuiltProducts.packageRoot + "/scripts/install", "--prefix", prefix.path, "--registry", registry, "--from", debug,
                    "--worker-python", TestInstall.workerPython,
                ])
            guard install.status == 0 else { throw TestSetupError("scripts/install failed: \(install.stderr)") }
            _ = try Subprocess.run("/bin/chmod", ["-R", "a+rX", prefix.path])
            return prefix
        }

        @Test func aSecondUserRunsAliceModelFromPlainPythonAfterModuleLoad() async throws {
            let h = try await ServingHarness()
            defer { h.stop() }
            let prefix = try Self.install(registry: h.service.registry)
            defer { prefix.remove() }
            let models = try TemporaryDirectory("dlhub-py-models")
            defer { models.remove() }
            let iris = try ServingFixtures.trainedIris(in: models.path)
            _ = try Subprocess.run("/bin/chmod", ["-R", "a+rX", models.path])
            let rows: JSONValue = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
            let expected = try ServingFixtures.inProcessPredictions(model: iris + "/model.joblib", rows: rows)

            // Alice publishes from Python.
            let published = try Self.shell(
                as: TestUsers.alice, prefix: prefix.path,
                "python3 -c 'from dlhub_slurm import DLHubClient; print(DLHubClient().publish_servable(\"\(iris)\"))'")
            #expect(published.status == 0, "\(published.stderr)")
            #expect(published.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "alice/iris@1")

            // Bob, a second user, runs it with the system's python3: the same predictions as in-process.
            let run = try Self.shell(
                as: TestUsers.bob, prefix: prefix.path,
                """
                python3 -c "from dlhub_slurm import DLHubClient; print(DLHubClient().run('alice/iris', \(rows.encodedString())))"
                """)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(try JSONValue.parse(run.stdout) == expected, "\(run.stdout)")

            // The rest of the toolkit, as bob: futures, many inputs, search, describe, errors by kind.
            let script = """
                import json, sys
                from concurrent.futures import Future
                import dlhub_slurm
                from dlhub_slurm import DLHubClient, NotFoundError, InvalidInputError, ConflictError
                rows = json.loads(sys.argv[1])
                dl = DLHubClient()
                out = {}
                future = dl.run("alice/iris", rows, asynchronous=True)
                out["is_future"] = isinstance(future, Future) and bool(future.task_id)
                out["future"] = future.result(timeout=120)
                out["many"] = dl.run_many("alice/iris", [rows[:1], rows[1:]])
                out["search"] = [s["id"] for s in dl.search("iris")]
                out["by_author"] = [s["id"] for s in dl.search_by_authors("Fisher")]
                out["nobody"] = dl.search_by_authors("Nobody-At-All")
                out["describe"] = dl.describe_servable("alice/iris")["digest"]
                out["status"] = dl.get_task_status(future.task_id)["status"]
                out["result"] = dl.get_result(future.task_id)
                out["tasks"] = [t["id"] for t in dl.tasks()]
                try:
                    dl.run("alice/no-such-model", rows)
                except NotFoundError as e:
                    out["not_found"] = [e.status, e.code]
                try:
                    dl.run("alice/iris", [[1, 2, 3]])
                except InvalidInputError as e:
                    out["invalid"] = [e.status, str(e)]
                try:
                    dl.cancel(future.task_id)
                except ConflictError as e:
                    out["conflict"] = e.status
                try:
                    dl.withdraw("alice/iris@1")
                except dlhub_slurm.DLHubError as e:
                    out["withdraw"] = [e.status, type(e).__name__]
                print(json.dumps(out))
                """
            let scriptFile = models.file("toolkit.py")
            try script.write(toFile: scriptFile, atomically: true, encoding: .utf8)
            chmod(scriptFile, 0o644)
            let toolkit = try Self.shell(as: TestUsers.bob, prefix: prefix.path, "python3 \(scriptFile) '\(rows.encodedString())'")
            #expect(toolkit.status == 0, "\(toolkit.stderr)")
            let doc = try JSONValue.parse(toolkit.stdout)
            #expect(doc["is_future"] == true)
            #expect(doc["future"] == expected)
            #expect(doc["result"] == expected)
            #expect(doc["status"] == "completed")
            #expect(doc["many"]?.arrayValue?.count == 2)
            #expect(doc["many"]?.arrayValue?.first == .array([expected.arrayValue?[0] ?? .null]))
            #expect(doc["search"]?.arrayValue?.contains("alice/iris") == true)
            #expect(doc["by_author"] == ["alice/iris"])
            #expect(doc["nobody"] == [])
            #expect(doc["describe"]?.stringValue?.hasPrefix("sha256:") == true)
            #expect(doc["tasks"]?.arrayValue?.count == 1, "only bob's own task, the asynchronous one")
            #expect(doc["not_found"] == [404, "not_found"])
            #expect(doc["invalid"]?.arrayValue?.first == 400)
            #expect(doc["invalid"]?.arrayValue?.last?.stringValue?.contains("4") == true, "the message says what the input should be")
            #expect(doc["conflict"] == 409)
            let refused = doc["withdraw"]?.arrayValue?.last?.stringValue
            #expect(
                refused == "ForbiddenError" || refused == "NotFoundError", "bob cannot withdraw alice's model: \(refused ?? "it worked")")

            // Another user cannot read or cancel bob's task.
            let taskID = try #require(doc["tasks"]?.arrayValue?.first?.stringValue)
            let carol = try Self.shell(
                as: TestUsers.carol, prefix: prefix.path,
                """
                python3 -c "
                from dlhub_slurm import DLHubClient, NotFoundError
                dl = DLHubClient()
                for call in (dl.get_task_status, dl.cancel):
                    try:
                        call('\(taskID)'); print('reached')
                    except NotFoundError:
                        print('not found')
                "
                """)
            #expect(carol.stdout == "not found\nnot found\n", "\(carol.stdout) \(carol.stderr)")
        }
    }
}

extension ClusterServingTests.PythonClientTests {
    /// What a DLHub user already has: a model described with DLHub's own SDK builders.
    @Test func modelsDescribedWithDLHubsSDKArePublishedThroughTheClientAndTheCLIThenRun() async throws {
        let sdkPython = TestInstall.sdkPython
        guard FileManager.default.isExecutableFile(atPath: sdkPython) else {
            throw TestSetupError(
                "DLHub's SDK environment \(sdkPython) is missing; run `sudo slurm/install-deps` (the README's test command does)")
        }
        let h = try await ServingHarness()
        defer { h.stop() }
        let prefix = try Self.install(registry: h.service.registry)
        defer { prefix.remove() }
        let work = try TemporaryDirectory("dlhub-sdk")
        defer { work.remove() }
        _ = try Subprocess.run("/bin/chown", [TestUsers.alice, work.path])
        let script = """
            import json, math, os, shutil, sys
            import joblib
            from sklearn.datasets import load_iris
            from sklearn.linear_model import LogisticRegression
            from dlhub_sdk.models.servables.sklearn import ScikitLearnModel
            from dlhub_sdk.models.servables.python import PythonStaticMethodModel
            from dlhub_slurm import DLHubClient

            X, y = load_iris(return_X_y=True)
            os.makedirs("model", exist_ok=True)
            joblib.dump(LogisticRegression(max_iter=500).fit(X, y), "model/model.joblib")
            rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]

            def describe(name):
                m = ScikitLearnModel.create_model("model/model.joblib", n_input_columns=4,
                                                  classes=["setosa", "versicolor", "virginica"], serialization_method="joblib")
                m.set_title("Iris species probabilities").set_name(name).set_domains(["biology"])
                m.set_creators(["Fisher, Ronald"], [["Rothamsted"]])
                return m

            dl = DLHubClient()
            out = {"client": dl.publish_servable(describe("sdk-iris"))}
            # The SDK's dlhub.json in a directory, for `dlhub publish`.
            os.makedirs("cli", exist_ok=True)
            shutil.copy("model/model.joblib", "cli/model.joblib")
            with open("cli/dlhub.json", "w") as f:
                json.dump(describe("sdk-iris-cli").to_dict(simplify_paths=True), f)
            sqrt = PythonStaticMethodModel.from_function_pointer(math.sqrt)
            sqrt.set_title("Square root").set_name("sdk-sqrt").set_creators(["Euclid, of Alexandria"])
            sqrt.set_inputs("float", "a number").set_outputs("float", "its square root")
            out["function"] = dl.publish_servable(sqrt)
            out["expected"] = joblib.load("model/model.joblib").predict_proba(rows).tolist()
            print(json.dumps(out))
            """
        try script.write(toFile: work.file("describe.py"), atomically: true, encoding: .utf8)
        chmod(work.file("describe.py"), 0o644)
        let described = try Self.shell(as: TestUsers.alice, prefix: prefix.path, "\(sdkPython) describe.py", directory: work.path)
        #expect(described.status == 0, "\(described.stderr)")
        let doc = try JSONValue.parse(described.stdout)
        #expect(doc["client"] == "alice/sdk-iris@1")
        #expect(doc["function"] == "alice/sdk-sqrt@1")
        let cli = try Self.shell(as: TestUsers.alice, prefix: prefix.path, "dlhub publish cli", directory: work.path)
        #expect(cli.status == 0, "\(cli.stderr)")
        #expect(cli.stdout.contains("published alice/sdk-iris-cli@1"), "\(cli.stdout)")

        // Bob finds and runs them (the environment the SDK pinned is built on first use).
        let run = try Self.shell(
            as: TestUsers.bob, prefix: prefix.path,
            """
            python3 -c "
            import json
            from dlhub_slurm import DLHubClient
            dl = DLHubClient()
            rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
            print(json.dumps({
                'found': sorted(s['id'] for s in dl.search_by_authors('Fisher')),
                'client': dl.run('alice/sdk-iris', rows, timeout=900),
                'cli': dl.run('alice/sdk-iris-cli', rows, timeout=900),
                'sqrt': dl.run('alice/sdk-sqrt', 2.25, timeout=300),
            }))
            "
            """)
        #expect(run.status == 0, "\(run.stderr)")
        let ran = try JSONValue.parse(run.stdout)
        #expect(ran["found"] == ["alice/sdk-iris", "alice/sdk-iris-cli"])
        #expect(ran["sqrt"] == 1.5)
        for key in ["client", "cli"] {
            let got = ran[key]?.arrayValue?.flatMap { $0.arrayValue ?? [] }.compactMap(\.doubleValue) ?? []
            let want = doc["expected"]?.arrayValue?.flatMap { $0.arrayValue ?? [] }.compactMap(\.doubleValue) ?? []
            #expect(got.count == 6 && want.count == 6, "\(key): \(ran[key] ?? .null)")
            #expect(zip(got, want).allSatisfy { abs($0 - $1) < 1e-9 }, "\(key): \(got) vs \(want)")
        }
    }
}

extension ClusterServingTests.PythonClientTests {
    /// `dlhub test` and `DLHubClient.test`: a servable tried on the login node, in the pilot's
    /// sandbox, with no Slurm job and nothing published.
    @Test func dlhubTestShowsTheOutputOrTheTracebackWithoutAJobOrAPublication() async throws {
        let h = try await ServingHarness()
        defer { h.stop() }
        let prefix = try Self.install(registry: h.service.registry)
        defer { prefix.remove() }
        let work = try TemporaryDirectory("dlhub-try")
        defer { work.remove() }
        let iris = try ServingFixtures.trainedIris(in: work.path)
        let broken = try ServingFixtures.pythonModule(
            in: work.path, name: "broken", module: "brokenmod",
            code: "import json\nraise RuntimeError('this module refuses to import')\ndef f(x):\n    return x\n", function: "f")
        let raising = try ServingFixtures.pythonFunctions(
            in: work.path, name: "raising", function: "behave", input: ["type": "string"], output: ["type": "string"])
        _ = try Subprocess.run("/bin/chmod", ["-R", "a+rX", work.path])
        let rows: JSONValue = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
        let expected = try ServingFixtures.inProcessPredictions(model: iris + "/model.joblib", rows: rows)
        func jobs() throws -> String { try DevCluster.command("squeue", ["-h", "-u", TestUsers.alice, "-o", "%i"]).stdout }
        let jobsBefore = try jobs()

        let good = try Self.shell(as: TestUsers.alice, prefix: prefix.path, "dlhub test \(iris) --input '\(rows.encodedString())'")
        #expect(good.status == 0, "\(good.stderr)")
        #expect(try JSONValue.parse(good.stdout) == expected)

        let bad = try Self.shell(as: TestUsers.alice, prefix: prefix.path, "dlhub test \(broken) --input '\"x\"'")
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("Traceback (most recent call last)"), "\(bad.stderr)")
        #expect(bad.stderr.contains("brokenmod.py\", line 2"), "the traceback reaches the servable's own line: \(bad.stderr)")
        #expect(bad.stderr.contains("dlhub: the servable did not load: RuntimeError: this module refuses to import"), "\(bad.stderr)")

        let fails = try Self.shell(as: TestUsers.alice, prefix: prefix.path, "dlhub test \(raising) --input '\"raise\"'")
        #expect(fails.status != 0)
        #expect(fails.stderr.contains("Traceback") && fails.stderr.contains("asked to raise"), "\(fails.stderr)")
        #expect(fails.stderr.contains("dlhub: the servable failed on this input: ValueError: asked to raise"), "\(fails.stderr)")

        let wrongType = try Self.shell(as: TestUsers.alice, prefix: prefix.path, "dlhub test \(iris) --input '[[1, 2]]'")
        #expect(wrongType.status != 0)
        #expect(wrongType.stderr.contains("does not fit what the servable declares"), "\(wrongType.stderr)")

        // From Python.
        let python = try Self.shell(
            as: TestUsers.alice, prefix: prefix.path,
            """
            python3 -c "
            import json
            from dlhub_slurm import DLHubClient, ServableError
            dl = DLHubClient()
            out = {'good': dl.test('\(iris)', \(rows.encodedString()))}
            try:
                dl.test('\(broken)', 'x')
            except ServableError as e:
                out['bad'] = e.log
            print(json.dumps(out))
            "
            """)
        #expect(python.status == 0, "\(python.stderr)")
        let doc = try JSONValue.parse(python.stdout)
        #expect(doc["good"] == expected)
        #expect(doc["bad"]?.stringValue?.contains("RuntimeError: this module refuses to import") == true)

        // Nothing was submitted to Slurm, nothing published.
        #expect(try jobs() == jobsBefore)
        #expect(try await h.api.send("GET", "/v1/servables").json["servables"]?.arrayValue?.isEmpty == true)
    }
}
