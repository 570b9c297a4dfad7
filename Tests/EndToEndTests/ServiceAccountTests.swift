import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// dlhubd runs as an unprivileged service account; as root it refuses, saying what to do.
@Suite struct ServiceAccountTests {
    init() throws {
        try TestUsers.require()
        try TestInstall.require()
    }

    @Test func dlhubdRefusesToRunAsRootAndSaysWhatToDo() throws {
        let dir = try TemporaryDirectory("dlhub-as-root")
        let result = try Subprocess.run(
            try TestInstall.executable("dlhubd"),
            ["--registry", dir.file("registry"), "--state-dir", dir.file("state"), "--listen", "127.0.0.1:0"])
        #expect(result.status == 78, "\(result.stderr)")
        #expect(result.stderr.contains("refuses to run as root"), "\(result.stderr)")
        #expect(result.stderr.contains("runuser -u dlhub -- dlhubd"))
        #expect(result.stderr.contains("--allow-root"))
        // It stopped before touching anything.
        #expect(!FileManager.default.fileExists(atPath: dir.file("registry")))
        #expect(!FileManager.default.fileExists(atPath: dir.file("state")))
    }

    @Test func theLiveServiceRunsAsTheServiceAccount() throws {
        let service = try LiveService()
        defer { service.stop() }
        let status = try String(contentsOfFile: "/proc/\(service.process.processIdentifier)/status", encoding: .utf8)
        let uidLine = status.split(separator: "\n").first { $0.hasPrefix("Uid:") } ?? ""
        let uids = uidLine.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().compactMap { UInt32($0) }
        let expected = try #require(TestInstall.uid(TestInstall.serviceUser))
        #expect(uids.count == 4 && uids.allSatisfy { $0 == expected }, "\(uidLine)")
        // What it writes belongs to the service account.
        let owner = try FileManager.default.attributesOfItem(atPath: service.registry + "/service.json")[.ownerAccountID] as? NSNumber
        #expect(owner?.uint32Value == expected)
    }
}
