import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// Hostile uploads and requests against a live dlhubd: each gets its 4xx (or is dropped), nothing
/// is written outside the staging area, and the service answers `/healthz` after each.
@Suite(.serialized) struct HardeningEndToEndTests {
    init() throws {
        try TestUsers.require()
        try TestInstall.require()
    }

    @Test func theHostileUploadCorpusIsRefusedAndNothingEscapes() async throws {
        try? FileManager.default.removeItem(atPath: HostileCorpus.canary)
        try FileManager.default.createDirectory(atPath: HostileCorpus.canary, withIntermediateDirectories: true)
        chmod(HostileCorpus.canary, 0o777)
        let service = try LiveService(config: .object(HostileCorpus.config))
        defer { service.stop() }
        let alice = APIClient(url: service.url)
        try await alice.login(as: TestUsers.alice)
        let scratch = try TemporaryDirectory("dlhub-corpus")
        let cases = HostileCorpus.tarCases() + (try HostileCorpus.pythonCases(in: scratch.path))
        #expect(cases.count >= 60)
        // docs/hardening.md lists every case with its outcome.
        let table = try String(contentsOfFile: BuiltProducts.packageRoot + "/docs/hardening.md", encoding: .utf8)
        for c in cases {
            #expect(table.contains("| \(c.label) | \(c.status)"), "docs/hardening.md does not list '\(c.label)' with \(c.status)")
        }
        for c in cases {
            let reply = try await alice.send("POST", "/v1/servables", body: c.body)
            #expect(reply.status == c.status, "\(c.label): \(reply.status) \(reply.json)")
            if c.status >= 400 {
                #expect(reply.json["error"]?["code"]?.stringValue != nil, "\(c.label): no error document: \(reply.json)")
                if !c.message.isEmpty { #expect(reply.errorMessage.contains(c.message), "\(c.label): \(reply.errorMessage)") }
            }
            let health = try await alice.send("GET", "/healthz")
            #expect(health.status == 200, "after \(c.label)")
            #expect(service.process.isRunning, "dlhubd died on \(c.label)")
        }
        // Nothing escaped: the canary is untouched, staging is empty, only the valid uploads were published.
        #expect((try FileManager.default.contentsOfDirectory(atPath: HostileCorpus.canary)).isEmpty)
        #expect((try FileManager.default.contentsOfDirectory(atPath: service.registry + "/.staging")).isEmpty)
        let published = try FileManager.default.subpathsOfDirectory(atPath: service.registry + "/servables").sorted()
        let valid = cases.filter { $0.status == 201 }.count
        #expect(published.filter { $0.split(separator: "/").count == 3 } == (1...valid).map { "alice/iris/\($0)" }, "\(published)")
        for version in 1...valid {
            let files = try FileManager.default.contentsOfDirectory(atPath: service.registry + "/servables/alice/iris/\(version)").sorted()
            #expect(files == ["model.joblib", "servable.json"], "\(files)")
        }
        let top = try FileManager.default.contentsOfDirectory(atPath: service.directory.path).filter { !$0.hasPrefix("dlhubd-") }.sorted()
        #expect(top == ["dlhubd.json", "registry", "state"], "\(top)")
        for escape in ["escape", "paxescape", "gnuescape", "zipescape", "bz2escape"] {
            #expect(!FileManager.default.fileExists(atPath: service.registry + "/" + escape))
            #expect(!FileManager.default.fileExists(atPath: service.registry + "/.staging/" + escape))
        }
    }

    @Test func slowClientsOnTheHTTPPortAreCutOff() async throws {
        let service = try LiveService(config: ["http_idle_timeout_seconds": 2])
        defer { service.stop() }
        let port = try #require(URL(string: service.url)?.port)
        // Half a request's headers, then nothing.
        let stalled = try RawSocket.connect(port: port)
        try stalled.send(Array("POST /v1/servables HTTP/1.1\r\nHost: localhost\r\n".utf8))
        // Headers trickling in, a byte a second.
        let trickle = try RawSocket.connect(port: port)
        // Connected, silent.
        let silent = try RawSocket.connect(port: port)
        let start = Date()
        var trickleClosed = false
        for byte in Array("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 30) {
            if (try? trickle.send([byte])) == nil || trickle.receive(timeout: 1) == nil {
                trickleClosed = true
                break
            }
        }
        #expect(trickleClosed, "a client trickling its headers was never cut off")
        #expect(stalled.frames(timeout: 10).closed)
        #expect(silent.frames(timeout: 10).closed)
        #expect(Date().timeIntervalSince(start) < 40)
        // A well-behaved client is served throughout.
        #expect(try await APIClient(url: service.url).send("GET", "/healthz").status == 200)
    }

    @Test func aRegistryWithInvalidAndDuplicateVersionsStartsAndReportsThem() async throws {
        let dir = try TemporaryDirectory("dlhub-heal")
        var service = try LiveService(directory: dir)
        let alice = APIClient(url: service.url)
        try await alice.login(as: TestUsers.alice)
        let fixture = try ServingFixtures.pythonFunctions(
            in: dir.path, name: "iris", function: "behave", input: ["type": "string"], output: ["type": "string"])
        for _ in 0..<2 { #expect(try await alice.publish(directory: fixture).status == 201) }
        service.stop()

        // What a crash, a hand edit or a forgery can leave on the shared filesystem.
        let servables = service.registry + "/servables/alice"
        _ = try Subprocess.run("/bin/cp", ["-a", servables + "/iris", servables + "/twin"])  // same digests, another name
        for (name, text) in [
            (
                "trap",
                #"{"datacite": {"titles": [{"title": "t"}]}, "dlhub": {"name": "trap", "resources": {"memory": "1e300G"}}, "servable": {}}"#
            ),
            ("garbled", "{ this is not json"),
        ] {
            try FileManager.default.createDirectory(atPath: servables + "/\(name)/1", withIntermediateDirectories: true)
            try text.write(toFile: servables + "/\(name)/1/servable.json", atomically: true, encoding: .utf8)
        }
        // A withdrawal interrupted after its tombstone: the files it was removing are still there.
        try #"{"by": "alice", "at": "2026-11-30T00:00:00Z", "reason": "crash test"}"#.write(
            toFile: servables + "/iris/1/withdrawn.json", atomically: true, encoding: .utf8)
        _ = try Subprocess.run("/bin/chown", ["-R", "\(TestInstall.serviceUser):", service.registry])

        service = try LiveService(directory: dir)
        defer { service.stop() }
        let cli = try CLI(service: service)
        let report = try cli.run(as: "root", ["admin", "registry", "--json"])
        #expect(report.status == 0, "\(report.stderr)")
        let problems = try JSONValue.parse(report.stdout)["problems"]?.arrayValue ?? []
        let reasons = Dictionary(
            problems.map { ($0["servable"]?.stringValue ?? "", $0["reason"]?.stringValue ?? "") }, uniquingKeysWith: { a, _ in a })
        #expect(reasons["alice/twin@1"]?.contains("is already that of alice/iris@1") == true, "\(reasons)")
        #expect(reasons["alice/twin@2"]?.contains("is already that of alice/iris@2") == true, "\(reasons)")
        #expect(reasons["alice/trap@1"]?.contains("dlhub.resources.memory") == true, "\(reasons)")
        #expect(reasons["alice/garbled@1"]?.contains("corrupt") == true, "\(reasons)")
        #expect(try cli.run(as: TestUsers.bob, ["admin", "registry"]).status != 0, "only admins")
        // The good versions are served; the interrupted withdrawal is complete.
        #expect(try cli.run(as: TestUsers.bob, ["describe", "alice/iris@2"]).status == 0)
        #expect(try cli.run(as: TestUsers.bob, ["describe", "alice/iris@1"]).stdout.contains("WITHDRAWN"))
        #expect(
            (try FileManager.default.contentsOfDirectory(atPath: servables + "/iris/1")).sorted() == ["servable.json", "withdrawn.json"])
    }

    @Test func clientsTrustOnlyAServiceFileTheRegistrysOwnerWrote() throws {
        let service = try LiveService()
        defer { service.stop() }
        let cli = try CLI(service: service)
        #expect(try cli.run(as: TestUsers.bob, ["ls"]).status == 0)
        let path = service.registry + "/service.json"
        chmod(path, 0o666)
        let writable = try cli.run(as: TestUsers.bob, ["ls"])
        #expect(writable.status != 0)
        #expect(writable.stderr.contains("not trusting \(path): other users can write it"), "\(writable.stderr)")
        chmod(path, 0o644)
        _ = try Subprocess.run("/bin/chown", ["\(TestUsers.bob):", path])
        let foreign = try cli.run(as: TestUsers.alice, ["ls"])
        #expect(foreign.stderr.contains("it belongs to bob, not to \(TestInstall.serviceUser)"), "\(foreign.stderr)")
        _ = try Subprocess.run("/bin/chown", ["\(TestInstall.serviceUser):", path])
        #expect(try cli.run(as: TestUsers.alice, ["ls"]).status == 0)
    }

    @Test func aMungeCredentialMadeForAnotherServiceIsRefused() async throws {
        let service = try LiveService()
        defer { service.stop() }
        let client = APIClient(url: service.url)
        let elsewhere = try await client.send(
            "GET", "/v1/whoami", authorization: "Munge " + TestUsers.munge(as: TestUsers.alice, payload: "dlhub-service:some-other-service")
        )
        #expect(elsewhere.status == 401)
        #expect(elsewhere.errorMessage.contains("made for another service"), "\(elsewhere.json)")
        let id = try #require(try await client.send("GET", "/healthz").json["service_id"]?.stringValue)
        let meant = try await client.send(
            "GET", "/v1/whoami", authorization: "Munge " + TestUsers.munge(as: TestUsers.alice, payload: "dlhub-service:" + id))
        #expect(meant.json["login"] == "alice")
        // A bare `munge -n` names no service: it could have been made for anything, and is refused.
        let bare = try await client.send("GET", "/v1/whoami", authorization: "Munge " + TestUsers.munge(as: TestUsers.alice))
        #expect(bare.status == 401)
        #expect(bare.errorMessage.contains("names no service"), "\(bare.json)")
        #expect(try CLI(service: service).run(as: TestUsers.alice, ["whoami"]).stdout.contains("alice"))
    }

    @Test func dlhubdRefusesARegistryOrKeyOthersCouldTamperWith() throws {
        let dir = try TemporaryDirectory("dlhub-modes")
        let service = try LiveService(directory: dir)
        service.stop()
        func refusal() -> String {
            do {
                try LiveService(directory: dir).stop()
                return "it started"
            } catch { return "\(error)" }
        }
        chmod(service.registry + "/servables", 0o777)
        let open = refusal()
        #expect(open.contains("has mode 777") && open.contains("chmod 700"), "\(open)")
        chmod(service.registry + "/servables", 0o700)
        chmod(service.stateDirectory + "/token.key", 0o644)
        let readable = refusal()
        #expect(readable.contains("token key") && readable.contains("chmod 600"), "\(readable)")
        chmod(service.stateDirectory + "/token.key", 0o600)
        try LiveService(directory: dir).stop()
    }

    @Test func schemathesisFindsNoServerErrorAndNoBreachOfTheDocumentedAPI() async throws {
        let st = (ProcessInfo.processInfo.environment["DLHUB_TOOLS_ENV"] ?? "/opt/dlhub-dev/tools") + "/bin/st"
        guard FileManager.default.isExecutableFile(atPath: st) else {
            throw TestSetupError("schemathesis is missing at \(st); run `sudo slurm/install-deps` (the README's test command does)")
        }
        let service = try LiveService()
        defer { service.stop() }
        let api = APIClient(url: service.url)
        try await api.login()
        let result = try Subprocess.run(
            st,
            [
                "run", BuiltProducts.packageRoot + "/docs/openapi.yaml", "--url", service.url, "-H",
                "Authorization: Bearer \(api.token ?? "")",
                "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--max-examples", "25", "--phases", "examples,coverage,fuzzing", "--workers", "1",
            ], environment: ["PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"])
        let summary = result.stdout.split(separator: "\n").suffix(25).joined(separator: "\n")
        #expect(result.status == 0, "\(summary)\n\(result.stderr.suffix(2000))")
        // The summary's count line: "468 generated, 468 passed" (a failure adds ", N failed").
        let counts = result.stdout.split(separator: "\n").last { $0.contains(" generated") } ?? ""
        #expect(counts.contains(" passed") && !counts.contains("failed") && !counts.contains("errored"), "\(summary)")
        #expect(service.process.isRunning)
        #expect(try await api.send("GET", "/healthz").status == 200)
    }

    @Test func theAPISpeaksHTTPSWhenGivenACertificate() async throws {
        let dir = try TemporaryDirectory("dlhub-tls")
        let cert = dir.file("cert.pem"), key = dir.file("key.pem")
        let made = try Subprocess.run(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1",
            ])
        #expect(made.status == 0, "\(made.stderr)")
        _ = try Subprocess.run("/bin/chown", ["\(TestInstall.serviceUser):", cert, key])
        chmod(key, 0o600)
        chmod(cert, 0o644)
        let service = try LiveService(config: ["tls_certificate": .string(cert), "tls_key": .string(key)])
        defer { service.stop() }
        #expect(service.url.hasPrefix("https://127.0.0.1:"), "\(service.url)")
        let secure = try Subprocess.run("/usr/bin/curl", ["-sS", "--cacert", cert, service.url + "/healthz"])
        #expect(secure.status == 0 && secure.stdout.contains("\"status\""), "\(secure.stdout)\(secure.stderr)")
        let authenticated = try Subprocess.run(
            "/usr/bin/curl",
            [
                "-sS", "--cacert", cert, "-H",
                "Authorization: Munge " + TestUsers.munge(as: TestUsers.alice, for: service.serviceID),
                service.url + "/v1/whoami",
            ])
        #expect(authenticated.stdout.contains("\"alice\""), "\(authenticated.stdout)")
        // Plain HTTP on that port gets nothing.
        let plain = try Subprocess.run(
            "/usr/bin/curl", ["-sS", "--max-time", "5", service.url.replacing("https://", with: "http://") + "/healthz"])
        #expect(!plain.stdout.contains("\"status\""))
        // A key others can read is refused at start.
        chmod(key, 0o644)
        do {
            try LiveService(config: ["tls_certificate": .string(cert), "tls_key": .string(key)]).stop()
            Issue.record("dlhubd started with a world-readable TLS key")
        } catch { #expect("\(error)".contains("chmod 600"), "\(error)") }
    }
}
