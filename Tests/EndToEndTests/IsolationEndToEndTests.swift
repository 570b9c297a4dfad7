import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// A published servable can harm only its own answers (DESIGN contract 10, pilot -> worker).
extension ClusterServingTests {
    @Suite struct IsolationEndToEndTests {
        init() throws {
            try TestUsers.require()
            try DevCluster.require()
        }

        @Test func aHostileServableCannotReachOtherUsersTheRegistryTheServiceOrTheNetwork() async throws {
            let h = try await ServingHarness(pools: [ServingHarness.pool("cpu", max: 1)])
            defer { h.stop() }
            let alice = APIClient(url: h.service.url)
            try await alice.login(as: TestUsers.alice)
            let bob = APIClient(url: h.service.url)
            try await bob.login(as: TestUsers.bob)

            // alice's private servable, with a secret among its files.
            let secretDir = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "secret", function: "behave", input: ["type": "string"], output: ["type": "string"])
            try "the formula is 42\n".write(toFile: secretDir + "/secret.txt", atomically: true, encoding: .utf8)
            var doc = try JSONValue.parse(Array(FileManager.default.contents(atPath: secretDir + "/servable.json")!))
            doc = doc.setting(["dlhub", "visible_to"], to: ["user:alice"])
            doc = doc.setting(["dlhub", "files", "other"], to: ["testfns.py", "secret.txt"])
            _ = FileManager.default.createFile(atPath: secretDir + "/servable.json", contents: Data(doc.encoded()))
            let secret = try await alice.send("POST", "/v1/servables", body: try ServingFixtures.archive(directory: secretDir))
            #expect(secret.status == 201, "\(secret.json)")
            #expect(try await alice.run("alice/secret", ["input": "before"]).json["output"] == "BEFORE")

            // bob's hostile servable, published like any other.
            let hostile = try await bob.send(
                "POST", "/v1/servables", body: try ServingFixtures.archive(directory: try ServingFixtures.hostile(in: h.work.path)))
            #expect(hostile.status == 201, "\(hostile.json)")

            let victimDir = h.service.registry + "/servables/alice/secret/1"
            let secretBefore = try String(contentsOfFile: victimDir + "/secret.txt", encoding: .utf8)
            let serviceFileBefore = FileManager.default.contents(atPath: h.service.registry + "/service.json")
            let victimPID = try #require(Self.workerPID(servingDirectory: victimDir), "alice's worker is not running")
            let pilotPort = try #require(Self.pilotPort(in: h.service.log))
            let httpPort = try #require(URL(string: h.service.url)?.port)
            let aliceHome = String(cString: getpwnam(TestUsers.alice)!.pointee.pw_dir)
            let serviceHome = String(cString: getpwnam(TestInstall.serviceUser)!.pointee.pw_dir)

            let attempts: [(String, String)] = [
                ("read", victimDir + "/secret.txt"),
                ("list", h.service.registry + "/servables"),
                ("list", h.service.registry + "/servables/alice"),
                ("write", victimDir + "/pwned.txt"),
                ("write", victimDir + "/testfns.py"),
                ("write", h.service.registry + "/service.json"),
                ("list", h.service.registry + "/.pilot-logs"),
                ("read", h.service.stateDirectory + "/token.key"),
                ("read", h.service.stateDirectory + "/tasks.sqlite"),
                ("list", h.service.stateDirectory),
                ("munge", ""),
                ("connect", "127.0.0.1:\(pilotPort)"),
                ("connect", "127.0.0.1:\(httpPort)"),
                ("signal", String(victimPID)),
                ("proc", String(victimPID)),
                ("processes", ""),
                ("environment", ""),
                ("list", aliceHome),
                ("list", serviceHome),
                ("list", "/var/tmp/dlhub-dev-cluster"),
            ]
            // What a worker may do, as a control: read its own servable, write its scratch and /tmp.
            let allowed: [(String, String)] = [
                ("read", "/servable/hostile.py"), ("write", "/scratch/notes.txt"), ("write", "/tmp/notes.txt"),
            ]
            // Attacks and alice's requests at the same time.
            async let attacked = bob.run(
                "bob/hostile", ["inputs": .array((attempts + allowed).map { ["attempt": .string($0.0), "target": .string($0.1)] })])
            var aliceAnswers: [JSONValue?] = []
            for word in ["during", "the", "attack"] {
                aliceAnswers.append(try await alice.run("alice/secret", ["input": .string(word)]).json["output"])
            }
            let reply = try await attacked
            #expect(aliceAnswers == ["DURING", "THE", "ATTACK"])

            // The hostile servable's own inputs are answered, and every attempt failed.
            #expect(reply.status == 200, "\(reply.json)")
            let outputs = reply.json["outputs"]?.arrayValue ?? []
            #expect(outputs.count == attempts.count + allowed.count, "\(reply.json)")
            for (attempt, output) in zip(attempts, outputs) {
                #expect(output["succeeded"] == false, "\(attempt.0) \(attempt.1): \(output["detail"]?.stringValue ?? "\(output)")")
            }
            for (attempt, output) in zip(allowed, outputs.dropFirst(attempts.count)) {
                #expect(output["succeeded"] == true, "\(attempt.0) \(attempt.1): \(output["detail"]?.stringValue ?? "\(output)")")
            }

            // Nothing changed on the host, and alice's worker is the same process, still answering.
            #expect(try String(contentsOfFile: victimDir + "/secret.txt", encoding: .utf8) == secretBefore)
            #expect(!FileManager.default.fileExists(atPath: victimDir + "/pwned.txt"))
            #expect(FileManager.default.contents(atPath: h.service.registry + "/service.json") == serviceFileBefore)
            #expect(Self.workerPID(servingDirectory: victimDir) == victimPID)
            #expect(try await alice.run("alice/secret", ["input": "after"]).json["output"] == "AFTER")
        }

        @Test func aForgedPilotWithTheServiceAccountsMungeButNotTheJobsSecretGetsNoWork() async throws {
            let h = try await ServingHarness(pools: [ServingHarness.pool("cpu", max: 1)])
            defer { h.stop() }
            let dir = try ServingFixtures.pythonFunctions(
                in: h.work.path, name: "doubler", function: "slow", input: ["type": "integer"], output: ["type": "integer"])
            let id = try await h.publish(dir)
            #expect(try await h.api.run(id, ["input": 1]).json["output"] == 2)
            let job = try #require(try h.slurmJobs(pool: "cpu").first { $0.state == "RUNNING" })
            let port = try #require(Self.pilotPort(in: h.service.log))

            // Everything a process of the service account can get, except the job's secret.
            func hello(node: String) throws -> PilotFrame {
                .hello(
                    PilotHello(
                        credential: try TestUsers.munge(as: TestInstall.serviceUser, payload: String(job.id)), jobID: job.id, node: node,
                        cores: 4, memoryMB: 4000, gpus: 0, walltimeEnd: 0, pool: h.pool("cpu"), slots: 4, nonce: PilotProof.random(),
                        isolation: "bubblewrap"))
            }
            // 1. A wrong proof: refused, and nothing but the welcome (which proves the service) ever arrives.
            let forger = try RawSocket.connect(port: port)
            try forger.send(try hello(node: "node9"))
            guard case .welcome = forger.nextFrame(timeout: 10) else { Issue.record("no welcome for a valid-looking hello"); return }
            try forger.send(.authenticate(proof: PilotProof.random()))
            let afterProof = forger.frames(timeout: 10)
            #expect(afterProof.closed)
            #expect(afterProof.frames.allSatisfy { if case .drain = $0 { return true } else { return false } }, "\(afterProof.frames)")
            // 2. Skipping the proof and claiming work: refused before any of it counts.
            let skipper = try RawSocket.connect(port: port)
            try skipper.send(try hello(node: "node8"))
            _ = skipper.nextFrame(timeout: 10)
            try skipper.send(.loaded(key: "anything", error: nil, log: ""))
            try skipper.send(.results(BatchResults(batchID: 1, items: [.init(id: 1, outcome: .output(Array("666".utf8)))])))
            #expect(skipper.frames(timeout: 10).closed)
            // 3. The real pilot's node is taken: a second session for it is refused outright.
            let twin = try RawSocket.connect(port: port)
            try twin.send(try hello(node: job.nodes))
            guard case .drain(let reason)? = twin.nextFrame(timeout: 10) else {
                Issue.record("a second session for the node was not refused"); return
            }
            #expect(reason.contains("already connected"))
            // 4. A job the service never submitted.
            let stranger = try RawSocket.connect(port: port)
            var other = try hello(node: "node7")
            if case .hello(var fields) = other {
                fields.jobID = job.id + 1000
                fields.credential = try TestUsers.munge(as: TestInstall.serviceUser, payload: String(job.id + 1000))
                other = .hello(fields)
            }
            try stranger.send(other)
            guard case .drain? = stranger.nextFrame(timeout: 10) else { Issue.record("a hello for a foreign job was not refused"); return }

            #expect(h.service.log.contains("could not prove it holds the job's secret"))
            #expect(h.service.log.contains("was not submitted by this service"))
            // The real pilot serves on, and no forged answer was recorded.
            for i in 2...5 { #expect(try await h.api.run(id, ["input": .int(Int64(i))]).json["output"] == .int(Int64(2 * i))) }
            #expect(try h.slurmJobs(pool: "cpu").filter { $0.state == "RUNNING" }.map(\.id) == [job.id])
        }

        @Test func strangersOnThePilotPortAreCutOff() async throws {
            let h = try await ServingHarness(pools: [ServingHarness.pool("cpu", max: 1)])
            defer { h.stop() }
            let port = try #require(Self.pilotPort(in: h.service.log))
            // Says nothing: dropped after the handshake deadline (5 s), not kept for ever.
            let silent = try RawSocket.connect(port: port)
            let start = Date()
            #expect(silent.frames(timeout: 20).closed)
            #expect(Date().timeIntervalSince(start) < 15)
            // A hello that claims to be 100 MB long: dropped at once, nothing buffered.
            let huge = try RawSocket.connect(port: port)
            try huge.send([0x06, 0x00, 0x00, 0x00, 1])
            #expect(huge.frames(timeout: 10).closed)
            // Garbage: dropped.
            let garbage = try RawSocket.connect(port: port)
            try garbage.send(Array("GET / HTTP/1.1\r\n\r\n".utf8))
            #expect(garbage.frames(timeout: 10).closed)
            // The service is unharmed.
            #expect(try await h.api.send("GET", "/healthz").status == 200)
        }

        @Test func ownersReadTheirServablesLogsAndNobodyElsesInputs() async throws {
            let h = try await ServingHarness(pools: [ServingHarness.pool("cpu", max: 1)])
            defer { h.stop() }
            let alice = APIClient(url: h.service.url)
            try await alice.login(as: TestUsers.alice)
            let bob = APIClient(url: h.service.url)
            try await bob.login(as: TestUsers.bob)
            let cli = try CLI(service: h.service)

            // A servable whose import fails: its owner sees why.
            let broken = try ServingFixtures.pythonModule(
                in: h.work.path, name: "broken", module: "broken",
                code: "import sys\nprint('loading the weights', file=sys.stderr)\nimport no_such_module_dlhub\n", function: "run")
            #expect(try await alice.send("POST", "/v1/servables", body: try ServingFixtures.archive(directory: broken)).status == 201)
            let failed = try await alice.run("alice/broken", ["input": "x"])
            #expect(failed.json["status"] == "failed")
            let logs = try cli.run(as: TestUsers.alice, ["logs", "alice/broken"])
            #expect(logs.status == 0, "\(logs.stderr)")
            #expect(logs.stdout.contains("No module named 'no_such_module_dlhub'"), "\(logs.stdout)")
            #expect(logs.stdout.contains("loading the weights"))
            // Anyone else: 404, although the servable is public.
            let bobLogs = try cli.run(as: TestUsers.bob, ["logs", "alice/broken"])
            #expect(bobLogs.status != 0)
            #expect(bobLogs.stderr.contains("only its owner can read a servable's logs"), "\(bobLogs.stderr)")
            #expect(try await bob.send("GET", "/v1/servables/alice/broken/logs").status == 404)

            // A servable that prints what it is given: alice's own inputs show in her logs, bob's never do.
            let echo = try ServingFixtures.pythonModule(
                in: h.work.path, name: "chatty", module: "chatty",
                code:
                    "import os, sys\ndef run(x):\n    print('got ' + x, file=sys.stderr)\n    if x == 'crash':\n        os._exit(5)\n    return x\n",
                function: "run")
            #expect(try await alice.send("POST", "/v1/servables", body: try ServingFixtures.archive(directory: echo)).status == 201)
            #expect(try await alice.run("alice/chatty", ["input": "alice-own-input"]).json["output"] == "alice-own-input")
            #expect(try await bob.run("alice/chatty", ["input": "bob-private-input"]).json["output"] == "bob-private-input")
            let chatty = try cli.run(as: TestUsers.alice, ["logs", "alice/chatty"])
            #expect(chatty.stdout.contains("got alice-own-input"), "\(chatty.stdout)")
            #expect(!chatty.stdout.contains("bob-private-input"), "\(chatty.stdout)")
            // A crash message carries only what the crashing input's own run printed: not alice's
            // earlier output on the same worker.
            #expect(try await alice.run("alice/chatty", ["input": "alice-private-input"]).json["output"] == "alice-private-input")
            let crashed = try await bob.run("alice/chatty", ["input": "crash"])
            let message = crashed.json["error"]?.stringValue ?? ""
            #expect(message.contains("crashed") && message.contains("got crash"), "\(crashed.json)")
            #expect(!message.contains("alice-private-input") && !message.contains("alice-own-input"), "\(message)")
        }

        /// The host pid of the worker process serving a version directory (the Python process,
        /// whether it runs directly or inside a sandbox started with that directory).
        static func workerPID(servingDirectory dir: String) -> Int32? {
            func cmdline(_ pid: Int32) -> String {
                guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return "" }
                return String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            }
            func parent(_ pid: Int32) -> Int32? {
                guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
                return status.split(separator: "\n").first { $0.hasPrefix("PPid:") }.flatMap {
                    Int32($0.dropFirst(5).trimmingCharacters(in: .whitespaces))
                }
            }
            let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
            for pid in pids where cmdline(pid).contains("worker.py") && !cmdline(pid).hasPrefix("bwrap") {
                var p: Int32? = pid
                for _ in 0..<4 {
                    guard let current = p else { break }
                    if cmdline(current).contains(dir) { return pid }
                    p = parent(current)
                }
            }
            return nil
        }

        /// The pilot listener's port, from dlhubd's log.
        static func pilotPort(in log: String) -> Int? {
            guard let range = log.range(of: "pilot.listen=") else { return nil }
            let rest = log[range.upperBound...].prefix { $0 != " " && $0 != "\n" }
            return rest.split(separator: ":").last.flatMap { Int($0) }
        }
    }
}
