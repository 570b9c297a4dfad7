import DLHubCore
import Foundation
import PropertyBased
import Testing

/// What an install may write into a virtual environment: site-packages, new scripts, new
/// headers. Files written anywhere else, or over the environment's own files, are reported.
@Suite struct EnvironmentAuditTests {
    /// Where a package's file may land, and whether it may.
    static let places: [(path: String, allowed: Bool)] = [
        ("lib/python3.11/site-packages/pkg/__init__.py", true),
        ("lib/python3.11/site-packages/pkg-1.0.dist-info/RECORD", true),
        ("lib/python3.11/site-packages/_virtualenv.py", true),  // there before: still site-packages
        ("bin/pkg-cli", true),
        ("include/site/python3.11/pkg/pkg.h", true),
        ("pyvenv.cfg", false),  // there before
        ("bin/python", false),  // there before (a link)
        ("bin/activate", false),  // there before
        ("bin/sub/tool", false),
        ("share/pkg/data.txt", false),
        ("etc/jupyter/config.json", false),
        ("lib/python3.11/os.py", false),
        ("dlhub-environment.json", false),
        ("lib/python3.11/site.py", false),
        ("lib/pkg.so", false),
    ]

    static func makeEnvironment() throws -> String {
        let dir = NSTemporaryDirectory() + "dlhub-audit-\(UUID().uuidString)"
        let fm = FileManager.default
        for sub in ["bin", "include", "lib/python3.11/site-packages"] {
            try fm.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true)
        }
        try "home = /usr/bin\n".write(toFile: dir + "/pyvenv.cfg", atomically: false, encoding: .utf8)
        try "# activate\n".write(toFile: dir + "/bin/activate", atomically: false, encoding: .utf8)
        try "".write(toFile: dir + "/lib/python3.11/site-packages/_virtualenv.py", atomically: false, encoding: .utf8)
        try fm.createSymbolicLink(atPath: dir + "/bin/python", withDestinationPath: "/usr/bin/python3")
        try fm.createSymbolicLink(atPath: dir + "/lib64", withDestinationPath: "lib")
        return dir
    }

    @Test func everyFileOutsideSitePackagesScriptsAndHeadersIsReported() async throws {
        await propertyCheck(count: 60, input: Gen.int(in: 0..<Self.places.count).array(of: 0...6)) { picks in
            guard let dir = try? Self.makeEnvironment() else {
                Issue.record("cannot make a test environment")
                return
            }
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let before = EnvironmentAudit.snapshot(dir)
            var expected: Set<String> = []
            for pick in Set(picks) {
                let (path, allowed) = Self.places[pick]
                let full = dir + "/" + path
                try? FileManager.default.createDirectory(
                    atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                // Written the way an installer writes: a new file put in place of the old.
                try? FileManager.default.removeItem(atPath: full)
                _ = FileManager.default.createFile(atPath: full, contents: Data("written by a package \(pick)\n".utf8))
                if !allowed { expected.insert(path) }
            }
            let found = Set(EnvironmentAudit.violations(before: before, after: EnvironmentAudit.snapshot(dir)))
            // A new directory holding a refused file is reported too; every refused file must be.
            #expect(expected.isSubset(of: found), "writes \(picks.map { Self.places[$0].path }): missed \(expected.subtracting(found))")
            let wrongly = found.filter { path in Self.places.contains { $0.allowed && ($0.path == path || $0.path.hasPrefix(path + "/")) } }
            #expect(wrongly.isEmpty, "refused what a package may write: \(wrongly)")
        }
    }

    @Test func theFileIsTracedToThePackageWhoseRecordListsIt() throws {
        let dir = try Self.makeEnvironment()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let info = dir + "/lib/python3.11/site-packages/dlhub_test_evil-1.0.dist-info"
        try FileManager.default.createDirectory(atPath: info, withIntermediateDirectories: true)
        try "dlhub_test_evil.py,sha256=x,10\n../../../pyvenv.cfg,sha256=y,20\n".write(
            toFile: info + "/RECORD", atomically: false, encoding: .utf8)
        #expect(EnvironmentAudit.owner(of: "pyvenv.cfg", in: dir) == "dlhub_test_evil 1.0")
        #expect(EnvironmentAudit.owner(of: "bin/activate", in: dir) == nil)
    }
}
