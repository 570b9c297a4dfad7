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

    /// Found by reading the clients: they trusted the registry's `service.json` for the address
    /// and sent a fresh munge credential (or a token) to whatever listened there, so a user who
    /// took `dlhubd`'s port while it was down collected every caller's credentials. On this host
    /// the clients now check that the port is held by the registry's owner first.
    @Test func noCredentialGoesToAPortTheRegistrysOwnerDoesNotHold() async throws {
        let registry = try TemporaryDirectory("dlhub-squatted")
        var port = 0
        repeat { port = Int.random(in: 20_000...29_999) } while !(ListeningSockets.owners(port: port) ?? [1]).isEmpty
        try JSONValue.object(["url": .string("http://127.0.0.1:\(port)"), "service_id": "squatted"]).encodedString()
            .write(toFile: registry.file("service.json"), atomically: false, encoding: .utf8)
        // As dlhubd leaves them: the registry and its service.json belong to the service account.
        _ = try Subprocess.run("/bin/chown", ["-R", TestInstall.serviceUser + ":", registry.path])
        chmod(registry.file("service.json"), 0o644)
        // bob holds the port and keeps what he is sent.
        let capture = "/tmp/dlhub-squat-\(port).txt"
        defer { try? FileManager.default.removeItem(atPath: capture) }
        let script = """
            import socket, sys, time
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", \(port))); s.listen(16); s.settimeout(1)
            end = time.time() + 20
            with open("\(capture)", "ab") as out:
                while time.time() < end:
                    try:
                        c, _ = s.accept()
                    except socket.timeout:
                        continue
                    c.settimeout(2)
                    try:
                        out.write(c.recv(65536)); out.flush()
                        c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: 40\\r\\nConnection: close\\r\\n\\r\\n" + b'{"login":"bob","service_id":"squatted"} ')
                    except OSError:
                        pass
                    c.close()
            """
        let squatter = Process()
        squatter.executableURL = URL(fileURLWithPath: "/usr/sbin/runuser")
        squatter.arguments = ["-u", TestUsers.bob, "--", "/usr/bin/python3", "-c", script]
        try squatter.run()
        defer { squatter.terminate() }
        let until = Date().addingTimeInterval(10)
        while (ListeningSockets.owners(port: port) ?? []).isEmpty, Date() < until { try await Task.sleep(for: .milliseconds(100)) }
        #expect(ListeningSockets.owners(port: port) == [TestUsers.uid(TestUsers.bob)!])

        let cli = try Subprocess.run(
            as: TestUsers.alice, try TestInstall.executable("dlhub"), ["whoami"], environment: ["DLHUB_REGISTRY": registry.path])
        #expect(cli.status != 0)
        #expect(cli.stderr.contains("not sending credentials"), "\(cli.stderr)")
        let python = try Subprocess.run(
            as: TestUsers.alice, "/usr/bin/python3",
            [
                "-c",
                "import sys; sys.path.insert(0, sys.argv[1]); from dlhub_slurm import DLHubClient; DLHubClient(registry=sys.argv[2]).whoami()",
                BuiltProducts.packageRoot + "/python", registry.path,
            ])
        #expect(python.status != 0)
        #expect(python.stderr.contains("not sending credentials"), "\(python.stderr)")
        let received = (try? String(contentsOfFile: capture, encoding: .utf8)) ?? ""
        #expect(!received.lowercased().contains("authorization"), "the squatter got a credential: \(received.prefix(300))")
    }
}
