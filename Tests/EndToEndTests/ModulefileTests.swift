import DLHubTesting
import Foundation
import Testing

/// `module load dlhub` with Debian's Lmod puts the executables on PATH.
@Suite struct ModulefileTests {
    @Test func moduleLoadPutsDLHubOnThePath() throws {
        let lmodInit = ["/usr/share/lmod/lmod/init/bash", "/usr/share/lmod/8.6.19/init/bash"].first {
            FileManager.default.fileExists(atPath: $0)
        }
        let initScript = try #require(lmodInit, "Lmod is not installed: run slurm/install-deps")
        let prefix = try TemporaryDirectory("dlhub-prefix")
        let debug = URL(fileURLWithPath: try BuiltProducts.path("dlhub")).deletingLastPathComponent().path
        let install = try Subprocess.run(
            "/bin/bash",
            [BuiltProducts.packageRoot + "/scripts/install", "--prefix", prefix.path, "--registry", "/srv/dlhub/registry", "--from", debug])
        #expect(install.status == 0, "\(install.stderr)")
        let shell = """
            source \(initScript)
            module use \(prefix.path)/modulefiles
            module load dlhub
            command -v dlhub; command -v dlhubd; command -v dlhub-pilot
            echo "registry=$DLHUB_REGISTRY"
            dlhub --help | head -1
            """
        let result = try Subprocess.run("/bin/bash", ["-c", shell], environment: ["PATH": "/usr/bin:/bin", "HOME": "/tmp"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("\(prefix.path)/bin/dlhub\n"))
        #expect(result.stdout.contains("\(prefix.path)/bin/dlhub-pilot\n"))
        #expect(result.stdout.contains("registry=/srv/dlhub/registry"))
        #expect(result.stdout.contains("OVERVIEW: Publish, find and run"))
    }
}
