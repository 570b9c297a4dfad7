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
}
