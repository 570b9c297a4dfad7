import DLHubPilot
import DLHubTesting
import Foundation
import Testing

/// The file a reconnecting pilot reads the service's new address from: only a regular file of
/// the pilot's own account that nobody else can write is believed (anyone else could otherwise
/// point pilots at a port of their own; the mutual proof would still refuse such a peer, but the
/// pilot would spend its grace period knocking on the wrong door).
@Suite struct ServiceAddressFileTests {
    @Test func onlyTheAccountsOwnUnwritableFileIsBelieved() throws {
        let dir = try TemporaryDirectory("dlhub-service-address")
        let path = dir.file("service-address")
        try "node0.cluster:7001\n".write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o644)
        let good = PilotClient.readServiceFile(path)
        #expect(good?.0 == "node0.cluster" && good?.1 == 7001)

        chmod(path, 0o664)
        #expect(PilotClient.readServiceFile(path) == nil, "group-writable")
        chmod(path, 0o646)
        #expect(PilotClient.readServiceFile(path) == nil, "world-writable")
        chmod(path, 0o644)
        chown(path, 65534, 65534)
        #expect(PilotClient.readServiceFile(path) == nil, "another account's file")
        chown(path, getuid(), getgid())

        for bad in ["", "no-port", "host:0", "host:70000", ":7001", "host:port", String(repeating: "h", count: 2000) + ":1"] {
            try bad.write(toFile: path, atomically: true, encoding: .utf8)
            chmod(path, 0o644)
            #expect(PilotClient.readServiceFile(path) == nil, "'\(bad.prefix(20))'")
        }
        #expect(PilotClient.readServiceFile(dir.path) == nil, "a directory")
        #expect(PilotClient.readServiceFile(dir.file("missing")) == nil)
    }
}
