import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// Who a caller is, at the edges (issue 17, "Identity edges"): a token's groups are looked up
/// again within a bound, and a munge credential must name this service.
@Suite struct IdentityEdgeTests {
    init() throws {
        try TestUsers.require()
    }

    /// Found by reading the authenticator: a token carried its holder's groups as they were when
    /// it was issued, so a user removed from a group kept seeing the group's servables for the
    /// token's whole lifetime (8 hours by default).
    @Test func removingAUserFromAGroupReachesTheirTokenWithinTheRefreshBound() async throws {
        let group = "dlhubtmp" + String(UInt32.random(in: 0...UInt32.max) % 100_000)
        _ = try Subprocess.run("/usr/sbin/groupadd", [group])
        defer { _ = try? Subprocess.run("/usr/sbin/groupdel", [group]) }
        #expect(try Subprocess.run("/usr/bin/gpasswd", ["-a", TestUsers.bob, group]).status == 0)
        let service = try LiveService(config: ["token_groups_refresh_seconds": 2])
        defer { service.stop() }
        let alice = APIClient(url: service.url)
        try await alice.login(as: TestUsers.alice)
        let doc = ServableFixtures.sklearnDocument(name: "team_model", visibleTo: ["group:" + group])
        let published = try await alice.send(
            "POST", "/v1/servables", body: ServableFixtures.archive(doc, files: ["model.joblib": Array("model".utf8)]))
        #expect(published.status == 201, "\(published.json)")
        let bob = APIClient(url: service.url)
        try await bob.login(as: TestUsers.bob)
        #expect(try await bob.send("GET", "/v1/servables/alice/team_model").status == 200, "bob is in the group")

        #expect(try Subprocess.run("/usr/bin/gpasswd", ["-d", TestUsers.bob, group]).status == 0)
        // Within the bound (2 s here, 60 s by default), the same token no longer sees it.
        var status = 200
        let deadline = Date().addingTimeInterval(10)
        while status == 200, Date() < deadline {
            try await Task.sleep(for: .milliseconds(500))
            status = try await bob.send("GET", "/v1/servables/alice/team_model").status
        }
        #expect(status == 404, "bob's token still sees the group's servable after he left the group")
        #expect(try await alice.send("GET", "/v1/servables/alice/team_model").status == 200, "its owner still does")
    }

    /// An empty payload (`munge -n`) names no service: such a credential could have been made for
    /// anything that takes munge and relayed here, so it is refused, saying how to make one.
    @Test func aMungeCredentialThatNamesNoServiceIsRefused() async throws {
        let service = try LiveService()
        defer { service.stop() }
        let client = APIClient(url: service.url)
        let bare = try await client.send("POST", "/v1/auth/token", authorization: "Munge " + TestUsers.munge(as: TestUsers.alice))
        #expect(bare.status == 401)
        #expect(bare.errorMessage.contains("munge -s dlhub-service:\(service.serviceID)"), "\(bare.json)")
        let named = try await client.send(
            "POST", "/v1/auth/token", authorization: "Munge " + TestUsers.munge(as: TestUsers.alice, for: service.serviceID))
        #expect(named.status == 201, "\(named.json)")
    }
}
