import DLHubCore
import Foundation
import PropertyBased
import Testing

@testable import DLHubPilot

/// What a pilot binds into a sandbox: never the node's kernel trees, shared directories, the
/// registry's private parts or the state directory, whatever path a file or setting names.
@Suite struct SandboxBindingTests {
    static let components = ["proc", "sys", "dev", "run", "tmp", "home", "etc", "opt", "sw", "..", ".", "var", "1", "root", "reg", ""]

    @Test func noGeneratedPathGetsPastTheNeverBoundList() async {
        let forbidden = ["/opt/reg/servables", "/opt/reg/.staging", "/var/lib/dlhub-state"]
        await propertyCheck(count: 2000, input: Gen.int(in: 0..<Self.components.count).array(of: 1...5)) { picks in
            let path = "/" + picks.map { Self.components[$0] }.joined(separator: "/")
            for bound in WorkerLauncher.bindable([path], forbidden: forbidden) {
                let clean = (WorkerLauncher.realPath(bound) as NSString).standardizingPath
                let plain = (bound as NSString).standardizingPath
                for p in [clean, plain] {
                    #expect(p != "/", "\(path) binds the whole node")
                    for root in WorkerLauncher.neverBound {
                        #expect(p != root && !root.hasPrefix(p + "/"), "\(path) binds \(root)")
                    }
                    for root in ["/proc", "/sys", "/dev", "/run"] { #expect(!p.hasPrefix(root + "/"), "\(path) binds inside \(root)") }
                    for root in forbidden {
                        #expect(p != root && !p.hasPrefix(root + "/") && !root.hasPrefix(p + "/"), "\(path) reaches \(root)")
                    }
                }
            }
        }
    }

    /// A file written into an environment after it was built (or by a package) decides nothing.
    @Test func pyvenvHomeIsNotTrustedAndAChangedInterpreterIsRefused() throws {
        let dir = NSTemporaryDirectory() + "dlhub-binding-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/bin", withIntermediateDirectories: true)
        try "home = /proc/1\n".write(toFile: dir + "/pyvenv.cfg", atomically: false, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: dir + "/bin/python", withDestinationPath: "/usr/bin/python3")
        let paths = try WorkerLauncher.interpreterPaths(dir + "/bin/python")
        #expect(paths == [dir], "\(paths)")

        let manifest: JSONValue = ["python": "/usr/bin/python3", "python_real": .string(WorkerLauncher.realPath("/usr/bin/python3"))]
        _ = FileManager.default.createFile(atPath: dir + "/dlhub-environment.json", contents: Data(manifest.encoded()))
        #expect(try WorkerLauncher.interpreterPaths(dir + "/bin/python") == [dir])

        // bin/python replaced by something else than the Python the service built from.
        try FileManager.default.removeItem(atPath: dir + "/bin/python")
        try FileManager.default.createSymbolicLink(atPath: dir + "/bin/python", withDestinationPath: "/bin/sh")
        #expect(throws: WorkerProcess.Failure.self) { try WorkerLauncher.interpreterPaths(dir + "/bin/python") }
    }
}
