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
