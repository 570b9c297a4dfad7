import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// The real `dlhub` and `dlhubd` executables, used by different Unix users.
@Suite struct RegistryEndToEndTests {
    init() throws { try TestUsers.require() }

    /// A servable directory owned by `user`, made with `dlhub init` as that user.
    func makeServable(_ cli: CLI, as user: String, in parent: TemporaryDirectory, name: String, extra: [String]) throws -> String {
        let dir = parent.file("\(user)-\(name)")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: dir + "/model.joblib", contents: Data("weights of \(name)".utf8))
        _ = try Subprocess.run("/bin/chown", ["-R", "\(user):", dir])
        let result = try cli.run(
            as: user,
            [
                "init", "--dir", dir, "--name", name, "--type", "sklearn", "--model", "model.joblib",
                "--input", "ndarray:[null,4]", "--output", "ndarray:[null]", "--author", "Curie, Marie",
            ] + extra)
        #expect(result.status == 0, "\(result.stderr)")
        return dir
    }

    @Test func twoUsersPublishSearchDescribeAndWithdraw() throws {
        let service = try LiveService()
        defer { service.stop() }
        let cli = try CLI(service: service)
        let work = try TemporaryDirectory("dlhub-e2e-work")

        let iris = try makeServable(
            cli, as: TestUsers.alice, in: work, name: "iris", extra: ["--title", "Iris species classifier", "--domain", "biology"])
        let published = try cli.run(as: TestUsers.alice, ["publish", iris])
        #expect(published.status == 0, "\(published.stderr)")
        #expect(published.stdout.contains("published alice/iris@1"))
        #expect(published.stdout.contains("sha256:"))

        let secret = try makeServable(
            cli, as: TestUsers.alice, in: work, name: "tagger", extra: ["--title", "Quark gluon tagger", "--visible-to", "group:physics"])
        #expect(try cli.run(as: TestUsers.alice, ["publish", secret]).status == 0)

        // bob sees the public one, not the group one.
        let bobList = try cli.run(as: TestUsers.bob, ["ls"])
        #expect(bobList.status == 0)
        #expect(bobList.stdout.contains("alice/iris@1"))
        #expect(!bobList.stdout.contains("tagger"))
        let bobSearch = try cli.run(as: TestUsers.bob, ["search", "quark"])
        #expect(!bobSearch.stdout.contains("tagger"))
        let bobDescribe = try cli.run(as: TestUsers.bob, ["describe", "alice/tagger"])
        #expect(bobDescribe.status != 0)
        #expect(bobDescribe.stderr.contains("no servable 'alice/tagger' that you can see"))

        // carol is in physics.
        let carolSearch = try cli.run(as: TestUsers.carol, ["search", "quark", "--json"])
        let found = try JSONValue.parse(carolSearch.stdout)
        #expect(found["servables"]?.arrayValue?.first?["id"] == "alice/tagger")

        // describe by digest, as bob, in JSON.
        let describe = try JSONValue.parse(try cli.run(as: TestUsers.bob, ["describe", "alice/iris", "--json"]).stdout)
        let digest = try #require(describe["digest"]?.stringValue)
        let byDigest = try cli.run(as: TestUsers.bob, ["describe", digest])
        #expect(byDigest.stdout.contains("alice/iris@1  Iris species classifier"))
        #expect(byDigest.stdout.contains("Curie, Marie"))

        // bob cannot withdraw alice's servable; alice can.
        let bobWithdraw = try cli.run(as: TestUsers.bob, ["withdraw", "alice/iris@1"])
        #expect(bobWithdraw.status != 0)
        #expect(bobWithdraw.stderr.contains("only alice can withdraw"))
        #expect(try cli.run(as: TestUsers.alice, ["withdraw", "alice/iris@1", "--reason", "superseded"]).status == 0)
        let tomb = try cli.run(as: TestUsers.bob, ["describe", digest])
        #expect(tomb.stdout.contains("WITHDRAWN"))
        #expect(tomb.stdout.contains("superseded"))
    }

    /// The files the registry writes into a version's directory are its own: an upload that
    /// carries a `withdrawn.json` (a tombstone "by alice" that nobody wrote) is refused, naming
    /// the file, and nothing of it is published.
    @Test func anUploadCarryingTheRegistrysOwnFilesIsRefused() throws {
        let service = try LiveService()
        defer { service.stop() }
        let cli = try CLI(service: service)
        let work = try TemporaryDirectory("dlhub-e2e-reserved")
        defer { work.remove() }
        let dir = try makeServable(cli, as: TestUsers.alice, in: work, name: "tombstoned", extra: ["--title", "Forged tombstone"])
        let forged: JSONValue = ["withdrawn_by": "alice", "reason": "nobody wrote this", "date": "2026-01-01T00:00:00Z"]
        _ = FileManager.default.createFile(atPath: dir + "/withdrawn.json", contents: Data(forged.encoded()))
        _ = try Subprocess.run("/bin/chown", ["-R", "\(TestUsers.alice):", dir])
        let refused = try cli.run(as: TestUsers.alice, ["publish", dir])
        #expect(refused.status != 0, "\(refused.stdout)")
        #expect(refused.stderr.contains("withdrawn.json") && refused.stderr.contains("rename or remove it"), "\(refused.stderr)")
        let described = try cli.run(as: TestUsers.alice, ["describe", "alice/tombstoned"])
        #expect(described.status != 0, "nothing was published: \(described.stdout)")
        // Without the file the same servable publishes and is not withdrawn.
        try FileManager.default.removeItem(atPath: dir + "/withdrawn.json")
        #expect(try cli.run(as: TestUsers.alice, ["publish", dir]).status == 0)
        let shown = try cli.run(as: TestUsers.alice, ["describe", "alice/tombstoned@1"])
        #expect(shown.status == 0 && !shown.stdout.lowercased().contains("withdrawn"), "\(shown.stdout)")
    }

    @Test func loginCachesATokenOnlyTheUserCanRead() throws {
        let service = try LiveService()
        defer { service.stop() }
        let cli = try CLI(service: service)
        let home = String(cString: getpwnam(TestUsers.bob)!.pointee.pw_dir)
        try? FileManager.default.removeItem(atPath: home + "/.dlhub")
        let login = try cli.run(as: TestUsers.bob, ["login"])
        #expect(login.status == 0, "\(login.stderr)")
        let attrs = try FileManager.default.attributesOfItem(atPath: home + "/.dlhub/token.json")
        #expect((attrs[.posixPermissions] as? Int) == 0o600)
        #expect((attrs[.ownerAccountID] as? NSNumber)?.uint32Value == TestUsers.uid(TestUsers.bob))
        let whoami = try cli.run(as: TestUsers.bob, ["whoami"])
        #expect(whoami.stdout.contains("bob"))
        #expect(whoami.stdout.contains("token from `dlhub login`"))
        try? FileManager.default.removeItem(atPath: home + "/.dlhub")
    }

    @Test func restartFindsEverythingAgain() throws {
        let dir = try TemporaryDirectory("dlhub-e2e-restart")
        let first = try LiveService(directory: dir)
        let cli = try CLI(service: first)
        let work = try TemporaryDirectory("dlhub-e2e-work")
        let model = try makeServable(
            cli, as: TestUsers.alice, in: work, name: "spectra", extra: ["--title", "Raman spectra denoiser", "--domain", "chemistry"])
        #expect(try cli.run(as: TestUsers.alice, ["publish", model]).status == 0)
        first.stop()
        #expect(first.process.terminationStatus == 0, "graceful stop on SIGTERM")

        let second = try LiveService(directory: dir)
        defer { second.stop() }
        let found = try cli.run(as: TestUsers.bob, ["search", "raman"])
        #expect(found.stdout.contains("alice/spectra@1"), "\(found.stdout)\(found.stderr)")
    }

    @Test func publishKilledMidUploadLeavesNothingVisible() throws {
        let dir = try TemporaryDirectory("dlhub-e2e-kill")
        let service = try LiveService(directory: dir)
        let work = try TemporaryDirectory("dlhub-e2e-work")
        // A 6 MB servable sent at 1 MB/s: dlhubd is killed while the upload is in flight.
        let doc = ServableFixtures.sklearnDocument(name: "big")
        let tarPath = work.file("big.tar")
        _ = FileManager.default.createFile(
            atPath: tarPath, contents: Data(ServableFixtures.archive(doc, files: ["model.joblib": [UInt8](repeating: 7, count: 6_000_000)]))
        )
        let credential = try TestUsers.munge(as: TestUsers.alice, for: service.serviceID)
        let curl = Process()
        curl.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        curl.arguments = [
            "-s", "--limit-rate", "1M", "-H", "Authorization: Munge \(credential)", "--data-binary", "@\(tarPath)",
            service.url + "/v1/servables",
        ]
        curl.standardOutput = FileHandle.nullDevice
        try curl.run()
        Thread.sleep(forTimeInterval: 2)
        service.kill()
        curl.waitUntilExit()

        let restarted = try LiveService(directory: dir)
        defer { restarted.stop() }
        let leftovers = FileManager.default.subpaths(atPath: dir.file("registry/servables")) ?? []
        #expect(leftovers.isEmpty, "\(leftovers)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: dir.file("registry/.staging"))) ?? []).isEmpty)
        let cli = try CLI(service: restarted)
        #expect(!(try cli.run(as: TestUsers.alice, ["ls"]).stdout.contains("big")))
    }

    @Test func cliSaysWhatToDoWithoutAService() throws {
        let cli = try CLI(service: LiveService())
        let none = try Subprocess.run(as: TestUsers.bob, cli.executable, ["ls"])
        #expect(none.status != 0)
        #expect(none.stderr.contains("cannot find the DLHub service"))
        #expect(none.stderr.contains("DLHUB_URL"))
        let down = try Subprocess.run(as: TestUsers.bob, cli.executable, ["ls", "--url", "http://127.0.0.1:1"])
        #expect(down.status != 0)
        #expect(down.stderr.contains("cannot reach the DLHub service"))
    }
}
