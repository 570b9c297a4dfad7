import DLHubCore
import DLHubTesting
import Foundation
import Glibc
import Testing

/// The shipped systemd unit: it verifies, and dlhubd tells systemd it is ready (Type=notify) only
/// once the API listens and service.json is written.
@Suite struct SystemdUnitTests {
    @Test func theInstalledUnitVerifies() throws {
        let prefix = try TemporaryDirectory("dlhub-prefix")
        defer { prefix.remove() }
        let debug = URL(fileURLWithPath: try BuiltProducts.path("dlhub")).deletingLastPathComponent().path
        let install = try Subprocess.run(
            "/bin/bash",
            [BuiltProducts.packageRoot + "/scripts/install", "--prefix", prefix.path, "--registry", "/srv/dlhub/registry", "--from", debug])
        #expect(install.status == 0, "\(install.stderr)")
        let unit = prefix.path + "/share/dlhub/systemd/dlhubd.service"
        let text = try String(contentsOfFile: unit, encoding: .utf8)
        #expect(
            text.contains("Type=notify") && text.contains("User=dlhub") && text.contains("ExecStart=\(prefix.path)/bin/dlhubd --config"))
        #expect(!text.contains("@PREFIX@"))
        let verify = try Subprocess.run("/usr/bin/systemd-analyze", ["verify", unit])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
    }

    @Test func readinessIsSentOnceServiceJsonIsWritten() throws {
        let dir = try TemporaryDirectory("dlhub-notify")
        defer { dir.remove() }
        let path = dir.file("notify.sock")
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        chmod(path, 0o777)  // dlhubd runs as the service account
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        let service = try LiveService(environment: ["NOTIFY_SOCKET": path])
        defer { service.stop() }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buffer, buffer.count, 0)
        #expect(n > 0, "no notification from dlhubd")
        let message = String(decoding: buffer[..<max(0, n)], as: UTF8.self)
        #expect(message.hasPrefix("READY=1\n"), "\(message)")
        #expect(message.contains("STATUS=listening on \(service.url)"), "\(message)")
        #expect(FileManager.default.fileExists(atPath: service.registry + "/service.json"))
    }
}
