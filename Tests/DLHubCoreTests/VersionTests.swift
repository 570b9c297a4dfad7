import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// One release number: the VERSION file, the executables' --version and the Python client.
@Suite struct VersionTests {
    @Test func everyPlaceSaysTheSameVersion() throws {
        let root = BuiltProducts.packageRoot
        let file = try String(contentsOfFile: root + "/VERSION", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(DLHubVersion.current == file)
        let client = try String(contentsOfFile: root + "/python/dlhub_slurm/__init__.py", encoding: .utf8)
        #expect(client.contains("__version__ = \"\(file)\""))
        let project = try String(contentsOfFile: root + "/python/pyproject.toml", encoding: .utf8)
        #expect(project.contains("version = \"\(file)\""))
    }
}
