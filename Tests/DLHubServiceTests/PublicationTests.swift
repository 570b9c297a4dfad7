import DLHubCore
import DLHubService
import DLHubTesting
import Foundation
import Hummingbird
import Testing

/// Publication, versions, digests, withdrawal, search and restart, through the HTTP API.
@Suite struct PublicationTests {
    @Test func threePublishesGiveVersionsOneTwoThreeWithDistinctDigests() async throws {
        let harness = try await ServiceHarness()
        try await harness.withClient { (client: Client) async throws in
            var digests: [String] = []
            for expected in 1...3 {
                let reply = try await client.publish(ServableFixtures.sklearnDocument(), as: TestUsers.alice)
                #expect(reply.status == .created)
                #expect(reply.json["version"]?.intValue == Int64(expected))
                #expect(reply.json["id"] == "alice/iris")
                digests.append(try #require(reply.json["digest"]?.stringValue))
            }
            #expect(Set(digests).count == 3)
            for (i, digest) in digests.enumerated() {
                let reply = try await client.send(.get, "/v1/servables/\(digest)", as: TestUsers.bob)
                #expect(reply.json["version"]?.intValue == Int64(i + 1))
            }
            let latest = try await client.send(.get, "/v1/servables/alice/iris", as: TestUsers.bob)
            #expect(latest.json["version"] == 3)
            #expect(latest.json["versions"] == [1, 2, 3])
            // The SDK's own version string is kept aside, and the model file is stored by name.
            #expect(latest.json["metadata"]?["dlhub"]?["sdk_version"] == "0.10.0")
            #expect(latest.json["metadata"]?["dlhub"]?["files"]?["model"] == "model.joblib")
        }
    }

    @Test func digestCanBeRecomputedFromTheRegistryDirectory() async throws {
        let harness = try await ServiceHarness()
        let record = try await harness.withClient { (client: Client) async throws in
            try await client.publish(ServableFixtures.sklearnDocument(), as: TestUsers.alice).json
        }
        let dir = harness.registryRoot + "/servables/alice/iris/1"
        let doc = try JSONValue.parse(Array(FileManager.default.contents(atPath: dir + "/servable.json")!))
        let model = Array(FileManager.default.contents(atPath: dir + "/model.joblib")!)
        let recomputed = ContentDigest.compute(
            metadata: doc, files: [.init(path: "model.joblib", size: model.count, sha256: ContentDigest.sha256Hex(model))])
        #expect(record["digest"]?.stringValue == recomputed)
    }

    @Test func concurrentPublishersGetDistinctVersionsAndWholeDirectories() async throws {
        let harness = try await ServiceHarness()
        let count = 8
        let versions = try await harness.withClient { (client: Client) async throws in
            try await withThrowingTaskGroup(of: Int64?.self) { group in
                for i in 0..<count {
                    group.addTask {
                        let files = ["model.joblib": [UInt8](repeating: UInt8(i), count: 200_000)]
                        let user = i % 2 == 0 ? TestUsers.alice : TestUsers.alice
                        return try await client.publish(ServableFixtures.sklearnDocument(), as: user, files: files).json["version"]?
                            .intValue
                    }
                }
                var out: [Int64] = []
                for try await v in group { if let v { out.append(v) } }
                return out.sorted()
            }
        }
        #expect(versions == (1...Int64(count)).map { $0 })
        // No torn directory: every version holds its whole model and metadata naming its own number.
        for v in 1...count {
            let dir = harness.registryRoot + "/servables/alice/iris/\(v)"
            let model = try #require(FileManager.default.contents(atPath: dir + "/model.joblib"))
            #expect(model.count == 200_000 && Set(model).count == 1)
            let doc = try JSONValue.parse(Array(FileManager.default.contents(atPath: dir + "/servable.json")!))
            #expect(doc["dlhub"]?["version"]?.intValue == Int64(v))
        }
        #expect(harness.stagingIsEmpty())
    }

    @Test func publishThatFailsMidwayLeavesNothingVisible() async throws {
        let harness = try await ServiceHarness()
        // A file and a directory with the same name: unpacking fails after the first file is written.
        let tar = TarWriter.write([
            TarEntry(path: "servable.json", kind: .file, contents: ServableFixtures.sklearnDocument().encoded()),
            TarEntry(path: "model.joblib", kind: .file, contents: [1, 2, 3]),
            TarEntry(path: "data", kind: .file, contents: [UInt8](repeating: 1, count: 100_000)),
            TarEntry(path: "data/inner.bin", kind: .file, contents: [1]),
        ])
        try await harness.withClient { (client: Client) async throws in
            let reply = try await client.send(.post, "/v1/servables", as: TestUsers.alice, body: tar)
            #expect(reply.status == .badRequest)
            #expect(harness.versionDirectories("alice", "iris").isEmpty)
            #expect(harness.stagingIsEmpty())
            // The next good publish is version 1: the failed one consumed no number.
            #expect(try await client.publish(ServableFixtures.sklearnDocument(), as: TestUsers.alice).json["version"] == 1)
        }
    }

    @Test func publicationsLeftHalfWrittenByACrashAreRemovedAtStart() async throws {
        let dir = try TemporaryDirectory("dlhub-crash")
        _ = try await ServiceHarness(directory: dir)
        // What a crash between unpacking and the rename leaves behind.
        let orphan = dir.file("registry/.staging/crashed-publication")
        try FileManager.default.createDirectory(atPath: orphan, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: orphan + "/servable.json", contents: Data("{}".utf8))
        let restarted = try await ServiceHarness(directory: dir)
        #expect(restarted.stagingIsEmpty())
        #expect(restarted.everythingUnderServables().isEmpty)
    }

    @Test func withdrawnVersionResolvesToATombstoneAndItsNumberIsNotReused() async throws {
        let harness = try await ServiceHarness()
        try await harness.withClient { (client: Client) async throws in
            _ = try await client.publish(ServableFixtures.sklearnDocument(), as: TestUsers.alice)
            let second = try await client.publish(ServableFixtures.sklearnDocument(), as: TestUsers.alice)
            let digest = try #require(second.json["digest"]?.stringValue)
            let withdrawn = try await client.send(.delete, "/v1/servables/alice/iris@2?reason=bad%20weights", as: TestUsers.alice)
            #expect(withdrawn.status == .ok)
            for uri in ["/v1/servables/alice/iris@2", "/v1/servables/\(digest)"] {
                let tomb = try await client.send(.get, uri, as: TestUsers.bob)
                #expect(tomb.status == .ok)
                #expect(tomb.json["withdrawal"]?["reason"] == "bad weights")
                #expect(tomb.json["withdrawn"] == true, "a boolean, as in search results")
                #expect(tomb.json["digest"]?.stringValue == digest)
            }
            #expect(!FileManager.default.fileExists(atPath: harness.registryRoot + "/servables/alice/iris/2/model.joblib"))
            // Latest now means version 1; search no longer lists 2.
            #expect(try await client.send(.get, "/v1/servables/alice/iris", as: TestUsers.bob).json["version"] == 1)
            let listed = try await client.send(.get, "/v1/servables?q=iris", as: TestUsers.bob)
            #expect(listed.json["servables"]?.arrayValue?.map { $0["version"] } == [1])
            // The next publish is 3.
            #expect(try await client.publish(ServableFixtures.sklearnDocument(), as: TestUsers.alice).json["version"] == 3)
            #expect(try await client.send(.delete, "/v1/servables/alice/iris@2", as: TestUsers.alice).status == .gone)
            #expect(try await client.send(.delete, "/v1/servables/alice/iris", as: TestUsers.alice).status == .badRequest)
        }
    }

    @Test func searchCoversTitlesAuthorsDomainsNamesAndTypes() async throws {
        let harness = try await ServiceHarness()
        try await harness.withClient { (client: Client) async throws in
            _ = try await client.publish(
                ServableFixtures.sklearnDocument(name: "iris", title: "Iris species classifier", domains: ["biology"]), as: TestUsers.alice)
            _ = try await client.publish(
                ServableFixtures.sklearnDocument(
                    name: "bandgap", title: "Band gap regressor", domains: ["materials science"],
                    description: "Predicts band gaps of perovskites"), as: TestUsers.bob)
            func ids(_ q: String) async throws -> [String] {
                try await client.send(.get, "/v1/servables?\(q)", as: TestUsers.carol).json["servables"]?.arrayValue?.compactMap {
                    $0["id"]?.stringValue
                }.sorted() ?? []
            }
            #expect(try await ids("q=species") == ["alice/iris"])
            #expect(try await ids("q=perovsk") == ["bob/bandgap"])
            #expect(try await ids("q=fisher") == ["alice/iris", "bob/bandgap"])
            #expect(try await ids("q=materials") == ["bob/bandgap"])
            #expect(try await ids("q=bandgap") == ["bob/bandgap"])
            #expect(try await ids("q=ndarray") == ["alice/iris", "bob/bandgap"])
            #expect(try await ids("owner=alice") == ["alice/iris"])
            #expect(try await ids("domain=materials%20science") == ["bob/bandgap"])
            #expect(try await ids("q=nothing-like-this") == [])
            #expect(try await ids("q=%22%29%28*") == [])  // FTS syntax characters are harmless
            #expect(try await client.send(.get, "/v1/servables?limit=0", as: TestUsers.carol).status == .badRequest)
        }
    }

    @Test func restartRebuildsTheIndexFromTheRegistry() async throws {
        let dir = try TemporaryDirectory("dlhub-restart")
        let first = try await ServiceHarness(directory: dir)
        try await first.withClient { (client: Client) async throws in
            _ = try await client.publish(
                ServableFixtures.sklearnDocument(name: "persisted", title: "Survives restarts"), as: TestUsers.alice)
        }
        // A new state directory: everything must come back from the registry alone.
        let second = try await ServiceHarness(directory: dir, stateName: "fresh-state")
        try await second.withClient { (client: Client) async throws in
            let found = try await client.send(.get, "/v1/servables?q=survives", as: TestUsers.bob)
            #expect(found.json["servables"]?.arrayValue?.first?["id"] == "alice/persisted")
        }
    }
}
