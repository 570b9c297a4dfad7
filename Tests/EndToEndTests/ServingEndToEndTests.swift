import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// Serving on the real local Slurm cluster: pilot jobs, resident Python workers, batched
/// dispatch, failures. Serialized: the pilots of one test would otherwise queue behind another's.
extension ClusterServingTests {
    @Suite struct ServingEndToEndTests {
        init() throws {
            try TestUsers.require()
            try DevCluster.require()
        }

        @Test func sklearnPredictionsMatchInProcessAndTheWorkerStaysResident() async throws {
            let h = try await ServingHarness()
            defer { h.stop() }
            let iris = try ServingFixtures.trainedIris(in: h.work.path)
            let id = try await h.publish(iris)
            let rows: JSONValue = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5], [4.9, 2.4, 3.3, 1.0]]
            let expected = try ServingFixtures.inProcessPredictions(model: iris + "/model.joblib", rows: rows)

            // Cold start: no pilot yet; the request causes a submission and is answered once it is up.
            #expect(try h.slurmJobs(pool: "cpu").filter { $0.state == "RUNNING" || $0.state == "PENDING" }.isEmpty)
            let first = try await h.api.run(id, ["input": rows])
            #expect(first.status == 200, "\(first.json)")
            #expect(first.json["output"] == expected)
            let jobsAfterFirst = try h.slurmJobs(pool: "cpu")
            #expect(jobsAfterFirst.count == 1)
            // The pilot (and so its workers) runs as the service account, never root.
            #expect(jobsAfterFirst.first?.user == TestInstall.serviceUser)

            // Warm: answered by the resident worker, no new Slurm job.
            let second = try await h.api.run(id, ["input": [[6.3, 3.3, 6.0, 2.5]]])
            #expect(
                second.json["output"]
                    == (try ServingFixtures.inProcessPredictions(model: iris + "/model.joblib", rows: [[6.3, 3.3, 6.0, 2.5]])))
            #expect(try h.slurmJobs(pool: "cpu").map(\.id) == jobsAfterFirst.map(\.id))

            // dlhub pilots and squeue agree on the pilot.
            let cli = try CLI(service: h.service)
            let table = try cli.run(as: "root", ["pilots"], environment: ["SLURM_CONF": DevCluster.defaultConf])
            let job = try #require(jobsAfterFirst.first)
            #expect(table.stdout.contains("\(job.id)"), "\(table.stdout)\(table.stderr)")
            #expect(table.stdout.contains("RUNNING"))
            #expect(table.stdout.contains(job.nodes))
            let pilots = try await h.pilots()
            #expect(pilots.count == 1)
            #expect(pilots.first?["job_id"]?.intValue == Int64(job.id))
            #expect(pilots.first?["nodes"]?.stringValue == job.nodes)
            #expect(pilots.first?["state"]?.stringValue == job.state)
        }

        @Test func thousandConcurrentRequestsAllCorrectWithinThePilotLimit() async throws {
            let h = try await ServingHarness(pools: [ServingHarness.pool("cpu", max: 2)])
            defer { h.stop() }
            let dir = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "doubler", function: "slow", input: ["type": "integer"], output: ["type": "integer"])
            let id = try await h.publish(dir)
            let results = try await withThrowingTaskGroup(of: (Int, JSONValue?).self) { group in
                for i in 0..<1000 {
                    group.addTask {
                        (i, try await h.api.run(id, ["input": .int(Int64(i)), "parameters": ["delay": 0.002]], wait: 300).json["output"])
                    }
                }
                var out: [Int: JSONValue?] = [:]
                for try await (i, output) in group { out[i] = output }
                return out
            }
            #expect(results.count == 1000)
            let wrong = results.filter { $0.value != .int(Int64(2 * $0.key)) }
            #expect(wrong.isEmpty, "\(wrong.prefix(5))")
            let jobs = try h.slurmJobs(pool: "cpu")
            #expect(jobs.count >= 1 && jobs.count <= 2, "pilot jobs submitted: \(jobs.map(\.id))")
            let report = try await h.api.send("GET", "/v1/pilots").json
            #expect((report["pools"]?.arrayValue?.first?["submitted_total"]?.intValue ?? 99) <= 2)
        }

        @Test func crashingAndHangingInputsFailAloneAndLaterRequestsSucceed() async throws {
            let h = try await ServingHarness()
            defer { h.stop() }
            let dir = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "moody", function: "behave", input: ["type": "string"], output: ["type": "string"], timeout: 3)
            let id = try await h.publish(dir)
            let reply = try await h.api.run(id, ["inputs": ["a", "crash", "b", "hang", "raise", "c", "mute"]])
            #expect(reply.status == 200, "\(reply.json)")
            #expect(reply.json["outputs"] == ["A", nil, "B", nil, nil, "C", nil])
            let errors = reply.json["errors"]?.arrayValue ?? []
            #expect(errors.count == 7)
            // A worker that closes its pipes but stays alive is killed after its timeout; only its input fails.
            #expect(
                errors.count == 7 && errors[6].stringValue?.contains("did not answer within the servable's timeout of 3 s") == true,
                "\(errors)")
            #expect(errors[1].stringValue?.contains("crashed (exit status 3)") == true, "\(errors)")
            #expect(errors[3].stringValue?.contains("timeout of 3 s") == true, "\(errors)")
            #expect(errors[4].stringValue?.contains("ValueError: asked to raise") == true, "\(errors)")
            #expect(errors[0].isNull && errors[2].isNull && errors[5].isNull)
            // Later requests are served, by the same pilot job.
            let jobs = try h.slurmJobs(pool: "cpu").map(\.id)
            for word in ["x", "y"] {
                #expect(try await h.api.run(id, ["input": .string(word)]).json["output"] == .string(word.uppercased()))
            }
            #expect(try h.slurmJobs(pool: "cpu").map(\.id) == jobs)
        }

        @Test func badRunRequestsAreClearAndWorkersKeepRunning() async throws {
            let h = try await ServingHarness()
            defer { h.stop() }
            let iris = try ServingFixtures.trainedIris(in: h.work.path)
            let id = try await h.publish(iris)
            #expect(try await h.api.run(id, ["input": [[5.1, 3.5, 1.4, 0.2]]]).status == 200)
            let jobs = try h.slurmJobs(pool: "cpu").map(\.id)

            let shape = try await h.api.send("POST", "/v1/servables/\(id)/run", json: ["input": [[1, 2]]])
            #expect(shape.status == 400)
            #expect(shape.errorMessage.contains("expected 4 element(s)"))
            let type = try await h.api.send("POST", "/v1/servables/\(id)/run", json: ["input": "five"])
            #expect(type.status == 400)
            #expect(type.errorMessage.contains("expected an array"))
            let neither = try await h.api.send("POST", "/v1/servables/\(id)/run", json: ["x": 1])
            #expect(neither.status == 400)
            let garbage = try await h.api.send("POST", "/v1/servables/\(id)/run", body: Array("{nope".utf8))
            #expect(garbage.status == 400)
            #expect(try await h.api.send("POST", "/v1/servables/root/missing/run", json: ["input": 1]).status == 404)

            // A servable only alice may see is a 404 for root... published by alice.
            let secretDir = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "secret", function: "behave", input: ["type": "string"], output: ["type": "string"])
            var doc = try JSONValue.parse(Array(FileManager.default.contents(atPath: secretDir + "/servable.json")!))
            doc = doc.setting(["dlhub", "visible_to"], to: ["user:alice"])
            _ = FileManager.default.createFile(atPath: secretDir + "/servable.json", contents: Data(doc.encoded()))
            let asAlice = APIClient(url: h.service.url)
            let tar = ServableFixtures.archive(
                doc, files: ["testfns.py": Array(FileManager.default.contents(atPath: secretDir + "/testfns.py")!)])
            let published = try await asAlice.send(
                "POST", "/v1/servables", body: tar,
                authorization: "Munge " + TestUsers.munge(as: TestUsers.alice, for: try await h.api.serviceID()))
            #expect(published.status == 201)
            let hidden = try await h.api.send(
                "POST", "/v1/servables/alice/secret/run", json: ["input": "x"],
                authorization: "Munge " + TestUsers.munge(as: TestUsers.bob, for: try await h.api.serviceID())
            )
            #expect(hidden.status == 404)

            // Withdrawn: 410.
            let v2 = try await h.publish(iris)
            #expect(try await h.api.send("DELETE", "/v1/servables/\(v2)").status == 200)
            let gone = try await h.api.send("POST", "/v1/servables/\(v2)/run", json: ["input": [[5.1, 3.5, 1.4, 0.2]]])
            #expect(gone.status == 410)
            #expect(gone.errorMessage.contains("withdrawn"))

            // The worker is still there: same job, and an answer.
            #expect(try await h.api.run(id, ["input": [[5.1, 3.5, 1.4, 0.2]]]).status == 200)
            #expect(try h.slurmJobs(pool: "cpu").map(\.id) == jobs)
        }

        @Test func aDependencyThatDoesNotExistFailsWithTheInstallersWords() async throws {
            let h = try await ServingHarness()
            defer { h.stop() }
            let dir = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "needy", function: "behave", input: ["type": "string"], output: ["type": "string"],
                dependencies: ["no-such-package-dlhub": "1.0"])
            let id = try await h.publish(dir)
            let reply = try await h.api.run(id, ["input": "x"])
            #expect(reply.json["status"] == "failed")
            let error = reply.json["error"]?.stringValue ?? ""
            #expect(error.contains("building the Python environment for no-such-package-dlhub==1.0 failed"), "\(reply.json)")
            #expect(error.contains("not found in the package registry"), "\(reply.json)")
        }

        @Test func largeMemoryServableRunsOnlyOnTheLargeMemoryPartition() async throws {
            let h = try await ServingHarness(pools: [
                ServingHarness.pool("cpu"),
                ServingHarness.pool("bigmem", partition: "bigmem", memory: 64000),
            ])
            defer { h.stop() }
            let dir = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "hungry", function: "behave", input: ["type": "string"], output: ["type": "string"],
                resources: ["memory": "32G"])
            let id = try await h.publish(dir)
            #expect(try await h.api.run(id, ["input": "big"]).json["output"] == "BIG")
            let bigmem = try h.slurmJobs(pool: "bigmem")
            #expect(bigmem.count == 1)
            #expect(bigmem.first?.nodes == "node4")
            #expect(bigmem.first?.partition == "bigmem")
            #expect(try h.slurmJobs(pool: "cpu").isEmpty)
        }

        @Test func idlePilotsAreReleasedAndMinimumPilotsStay() async throws {
            let h = try await ServingHarness(pools: [
                ServingHarness.pool("warm", min: 1, idle: 3),
                ServingHarness.pool("burst", min: 0, idle: 3),
            ])
            defer { h.stop() }
            let dir = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "bursty", function: "behave", input: ["type": "string"], output: ["type": "string"],
                resources: ["pool": .string(h.pool("burst"))])
            let id = try await h.publish(dir)
            #expect(try await h.api.run(id, ["input": "go"]).json["output"] == "GO")
            #expect(try h.slurmJobs(pool: "burst").first?.state == "RUNNING")
            // Idle past the timeout: the burst pilot is drained and its job completes; the warm one stays.
            let deadline = Date().addingTimeInterval(60)
            var burst = try h.slurmJobs(pool: "burst")
            while Date() < deadline, burst.contains(where: { $0.state == "RUNNING" || $0.state == "COMPLETING" }) {
                try await Task.sleep(for: .seconds(1))
                burst = try h.slurmJobs(pool: "burst")
            }
            #expect(burst.count == 1)
            #expect(burst.first?.state == "COMPLETED", "\(burst)")
            let warm = try h.slurmJobs(pool: "warm")
            #expect(warm.count == 1)
            #expect(warm.first?.state == "RUNNING")
        }

        @Test func runShowsThePendingPilotJobWhileItWaits() async throws {
            let h = try await ServingHarness(pools: [
                ServingHarness.pool("cpu"), ServingHarness.pool("bigmem", partition: "bigmem", memory: 64000),
            ])
            defer { h.stop() }
            let dir = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "patient", function: "behave", input: ["type": "string"], output: ["type": "string"],
                resources: ["memory": "32G"])
            let id = try await h.publish(dir)
            // Occupy the only large-memory node, so the pilot job has to queue.
            let blocker = try DevCluster.command(
                "sbatch",
                ["--parsable", "-p", "bigmem", "--exclusive", "-J", "dlhub-test-blocker", "-o", "/dev/null", "--wrap", "sleep 300"])
            let blockerID = blocker.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(!blockerID.isEmpty, "\(blocker.stderr)")
            defer { _ = try? DevCluster.command("scancel", [blockerID]) }
            let cli = try CLI(service: h.service)
            let release = Task {
                try await Task.sleep(for: .seconds(6))
                _ = try DevCluster.command("scancel", [blockerID])
            }
            let result = try cli.run(as: "root", ["run", id, "--input", "\"late\""], environment: ["SLURM_CONF": DevCluster.defaultConf])
            try await release.value
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("\"LATE\""))
            let job = try #require(try h.slurmJobs(pool: "bigmem").first)
            #expect(result.stderr.contains("pilot job \(job.id) is PENDING (Resources)"), "\(result.stderr)")
            #expect(result.stderr.contains("waiting"))
        }

        @Test func deterministicServablesAnswerRepeatsFromTheCache() async throws {
            let h = try await ServingHarness()
            defer { h.stop() }
            let dir = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "memo", function: "pid", input: ["type": "integer"], output: ["type": "integer"], deterministic: true
            )
            let id = try await h.publish(dir)
            func hits() async throws -> Int { try await h.metric("dlhub_cache_hits_total") }
            let first = try await h.api.run(id, ["inputs": [1, 2]]).json["outputs"]
            #expect(try await hits() == 0)
            // The same inputs again: answered from the cache, same outputs.
            let again = try await h.api.run(id, ["inputs": [2, 1, 3]]).json["outputs"]
            #expect(try await hits() == 2)
            #expect(again?.arrayValue?[0] == first?.arrayValue?[1] && again?.arrayValue?[1] == first?.arrayValue?[0])
            // Opting out runs it again.
            #expect(try await h.api.run(id, ["input": 1, "cache": false]).status == 200)
            #expect(try await hits() == 2)
            // ... and adds nothing to the cache: the same input sent normally afterwards is a miss.
            #expect(try await h.api.run(id, ["input": 7, "cache": false]).status == 200)
            #expect(try await h.api.run(id, ["input": 7]).status == 200)
            #expect(try await hits() == 2)
            #expect(try await h.api.send("POST", "/v1/servables/\(id)/run", json: ["input": 1, "cache": "yes"]).status == 400)
        }

        @Test func onnxModelServesWhatOnnxruntimeComputesInProcess() async throws {
            let h = try await ServingHarness()
            defer { h.stop() }
            let dir = try ServingFixtures.onnxIris(in: h.work.path)
            let id = try await h.publish(dir)
            let rows: JSONValue = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
            let reply = try await h.api.run(id, ["input": rows])
            #expect(reply.status == 200, "\(reply.json)")
            #expect(reply.json["output"] == (try ServingFixtures.onnxInProcess(model: dir + "/model.onnx", rows: rows)))
            #expect(reply.json["output"] == [0, 2, 1])
        }
    }
}
