import DLHubCore
import DLHubTesting
import Hummingbird
import Testing

/// Bad uploads get a 4xx naming the problem, and nothing reaches the registry.
@Suite struct BadInputTests {
    static let doc = ServableFixtures.sklearnDocument()

    static func tar(_ entries: [TarEntry]) -> [UInt8] { TarWriter.write(entries) }
    static func meta(_ doc: JSONValue) -> TarEntry { TarEntry(path: "servable.json", kind: .file, contents: doc.encoded()) }
    static let model = TarEntry(path: "model.joblib", kind: .file, contents: [1])

    static let cases: [(String, [UInt8], String)] = [
        (
            "malformed JSON", tar([TarEntry(path: "servable.json", kind: .file, contents: Array("{\"datacite\": ".utf8)), model]),
            "not valid JSON"
        ),
        (
            "missing fields", tar([meta(["datacite": ["titles": [["title": "x"]]], "dlhub": [:], "servable": [:]]), model]),
            "dlhub.name: is missing"
        ),
        ("unknown loader", tar([meta(doc.setting(["servable", "shim"], to: "magic.Wand")), model]), "unknown loader type 'magic.Wand'"),
        ("name with slash", tar([meta(doc.setting(["dlhub", "name"], to: "a/b")), model]), "contains '/'"),
        ("name with dots", tar([meta(doc.setting(["dlhub", "name"], to: "..")), model]), "contains '..'"),
        ("name with space", tar([meta(doc.setting(["dlhub", "name"], to: "my model")), model]), "contains spaces"),
        ("entry with ../", tar([meta(doc), model, TarEntry(path: "../escape.txt", kind: .file, contents: [1])]), "'..'"),
        ("absolute entry", tar([meta(doc), model, TarEntry(path: "/tmp/abs.txt", kind: .file, contents: [1])]), "absolute path"),
        (
            "symlink out", tar([meta(doc), model, TarEntry(path: "link", kind: .symlink(target: "../../../etc/passwd"))]),
            "outside the servable"
        ),
        (
            "absolute symlink", tar([meta(doc), model, TarEntry(path: "link", kind: .symlink(target: "/etc/passwd"))]),
            "outside the servable"
        ),
        ("no servable.json", tar([model]), "no servable.json"),
        ("not a tar", Array(repeating: 0x41, count: 4096), "not a tar or zip archive"),
        ("model missing", tar([meta(doc)]), "not in the uploaded directory"),
    ]

    @Test(arguments: 0..<cases.count)
    func badUploadIsRefusedAndNothingIsWritten(_ index: Int) async throws {
        let (label, body, expected) = Self.cases[index]
        let harness = try await ServiceHarness()
        try await harness.withClient { (client: Client) async throws in
            let reply = try await client.send(.post, "/v1/servables", as: TestUsers.alice, body: body)
            #expect(reply.status == .badRequest, "\(label): \(reply.status)")
            #expect(reply.errorMessage.contains(expected), "\(label): \(reply.errorMessage)")
            #expect(harness.everythingUnderServables().isEmpty, "\(label)")
            #expect(harness.stagingIsEmpty(), "\(label)")
            // The service is still fine.
            #expect(try await client.publish(Self.doc, as: TestUsers.alice).status == .created)
        }
    }

    @Test func uploadOverTheSizeLimitIs413() async throws {
        let harness = try await ServiceHarness(maxUploadBytes: 64 * 1024)
        try await harness.withClient { (client: Client) async throws in
            let reply = try await client.publish(
                Self.doc, as: TestUsers.alice, files: ["model.joblib": [UInt8](repeating: 1, count: 200_000)])
            #expect(reply.status == .contentTooLarge)
            #expect(reply.errorMessage.contains("max_upload_bytes"))
            #expect(harness.everythingUnderServables().isEmpty)
        }
    }

    @Test func unknownRoutesAndBadReferencesAreClear() async throws {
        let harness = try await ServiceHarness()
        try await harness.withClient { (client: Client) async throws in
            #expect(try await client.send(.get, "/v1/nothing", as: TestUsers.alice).status == .notFound)
            let bad = try await client.send(.get, "/v1/servables/alice/iris@zero", as: TestUsers.alice)
            #expect(bad.status == .badRequest)
            #expect(bad.errorMessage.contains("owner/name@N"))
        }
    }
}
