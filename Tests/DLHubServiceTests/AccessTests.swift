import DLHubCore
import DLHubTesting
import HTTPTypes
import Hummingbird
import Testing

/// Authentication and visibility through the HTTP API, with real munge credentials.
@Suite struct AccessTests {
    @Test func requestsWithoutCredentialsAre401() async throws {
        let harness = try await ServiceHarness()
        try await harness.withClient { (client: Client) async throws in
            for (method, uri) in [
                (HTTPRequest.Method.get, "/v1/servables"), (.post, "/v1/servables"), (.get, "/v1/servables/a/b"), (.get, "/v1/whoami"),
            ] {
                let reply = try await client.send(method, uri, as: nil)
                #expect(reply.status == .unauthorized)
                #expect(reply.errorMessage.contains("Munge"))
            }
            #expect(try await client.send(.get, "/healthz", as: nil).status == .ok)
            #expect(try await client.send(.get, "/metrics", as: nil).status == .ok)
            let garbage = try await client.send(.get, "/v1/servables", headers: [.authorization: "Munge garbage"])
            #expect(garbage.status == .unauthorized)
        }
    }

    @Test func replayedMungeCredentialIs401() async throws {
        let harness = try await ServiceHarness()
        try await harness.withClient { (client: Client) async throws in
            let credential = try TestUsers.munge(as: TestUsers.alice, for: client.serviceID)
            let first = try await client.send(.get, "/v1/whoami", headers: [.authorization: "Munge \(credential)"])
            #expect(first.status == .ok)
            #expect(first.json["login"] == "alice")
            #expect(first.json["groups"]?.arrayValue?.contains("physics") == true)
            let again = try await client.send(.get, "/v1/whoami", headers: [.authorization: "Munge \(credential)"])
            #expect(again.status == .unauthorized)
            #expect(again.errorMessage.contains("replayed"))
        }
    }

    @Test func tokensStandInForMunge() async throws {
        let harness = try await ServiceHarness()
        try await harness.withClient { (client: Client) async throws in
            let issued = try await client.send(.post, "/v1/auth/token", as: TestUsers.bob)
            #expect(issued.status == .created)
            let token = try #require(issued.json["token"]?.stringValue)
            let me = try await client.send(.get, "/v1/whoami", headers: [.authorization: "Bearer \(token)"])
            #expect(me.json["login"] == "bob")
            let tampered = try await client.send(.get, "/v1/whoami", headers: [.authorization: "Bearer \(token.dropLast(2))xx"])
            #expect(tampered.status == .unauthorized)
            let noMunge = try await client.send(.post, "/v1/auth/token", headers: [.authorization: "Bearer \(token)"])
            #expect(noMunge.status == .unauthorized)
        }
    }

    @Test func publishingAsSomeoneElseIs403() async throws {
        let harness = try await ServiceHarness()
        try await harness.withClient { (client: Client) async throws in
            let viaQuery = try await client.send(
                .post, "/v1/servables?owner=bob", as: TestUsers.alice,
                body: ServableFixtures.archive(ServableFixtures.sklearnDocument()))
            #expect(viaQuery.status == .forbidden)
            let doc = ServableFixtures.sklearnDocument().setting(["dlhub", "owner"], to: "bob")
            let viaMetadata = try await client.publish(doc, as: TestUsers.alice)
            #expect(viaMetadata.status == .forbidden)
            #expect(harness.everythingUnderServables().isEmpty)
        }
    }

    @Test func groupVisibleServableIsHiddenFromNonMembers() async throws {
        let harness = try await ServiceHarness()
        try await harness.withClient { (client: Client) async throws in
            let doc = ServableFixtures.sklearnDocument(
                name: "secret-model", title: "Quark gluon tagger", visibleTo: ["group:physics"], domains: ["physics"])
            let published = try await client.publish(doc, as: TestUsers.alice)
            #expect(published.status == .created)
            let digest = try #require(published.json["digest"]?.stringValue)

            // bob: absent from ls and search, 404 (not 403) on describe by name, version and digest.
            let bobList = try await client.send(.get, "/v1/servables", as: TestUsers.bob)
            #expect(bobList.json["count"] == 0)
            let bobSearch = try await client.send(.get, "/v1/servables?q=quark", as: TestUsers.bob)
            #expect(bobSearch.json["count"] == 0)
            for uri in ["/v1/servables/alice/secret-model", "/v1/servables/alice/secret-model@1", "/v1/servables/\(digest)"] {
                let reply = try await client.send(.get, uri, as: TestUsers.bob)
                #expect(reply.status == .notFound, "\(uri)")
            }
            let bobWithdraw = try await client.send(.delete, "/v1/servables/alice/secret-model@1", as: TestUsers.bob)
            #expect(bobWithdraw.status == .notFound)

            // carol is in physics: she sees it everywhere.
            let carolSearch = try await client.send(.get, "/v1/servables?q=quark", as: TestUsers.carol)
            #expect(carolSearch.json["servables"]?.arrayValue?.first?["id"] == "alice/secret-model")
            let carolDescribe = try await client.send(.get, "/v1/servables/\(digest)", as: TestUsers.carol)
            #expect(carolDescribe.status == .ok)
            // ... but only the owner may withdraw.
            let carolWithdraw = try await client.send(.delete, "/v1/servables/alice/secret-model@1", as: TestUsers.carol)
            #expect(carolWithdraw.status == .forbidden)
        }
    }

    @Test func userVisibilityAndOwnersAlwaysSeeTheirOwn() async throws {
        let harness = try await ServiceHarness()
        try await harness.withClient { (client: Client) async throws in
            let doc = ServableFixtures.sklearnDocument(name: "for-bob", visibleTo: ["user:bob"])
            #expect(try await client.publish(doc, as: TestUsers.alice).status == .created)
            #expect(try await client.send(.get, "/v1/servables/alice/for-bob", as: TestUsers.bob).status == .ok)
            #expect(try await client.send(.get, "/v1/servables/alice/for-bob", as: TestUsers.carol).status == .notFound)
            #expect(try await client.send(.get, "/v1/servables/alice/for-bob", as: TestUsers.alice).status == .ok)
        }
    }
}
