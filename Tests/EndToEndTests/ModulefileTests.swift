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
            dlhub --version; dlhubd --version; dlhub-pilot --version
            man -w dlhub-run; man -w 8 dlhubd
            complete -p dlhub
            python3 -c 'import dlhub_slurm; print("python client", dlhub_slurm.__version__)'
            echo "zsh=${FPATH:-}"
            """
        let result = try Subprocess.run("/bin/bash", ["-c", shell], environment: ["PATH": "/usr/bin:/bin", "HOME": "/tmp"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("\(prefix.path)/bin/dlhub\n"))
        #expect(result.stdout.contains("\(prefix.path)/bin/dlhub-pilot\n"))
        #expect(result.stdout.contains("registry=/srv/dlhub/registry"))
        #expect(result.stdout.contains("OVERVIEW: Publish, find and run"))
        let version = try String(contentsOfFile: BuiltProducts.packageRoot + "/VERSION", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(result.stdout.components(separatedBy: "\n").filter { $0 == version }.count == 3, "--version on all three")
        #expect(result.stdout.contains("\(prefix.path)/share/man/man1/dlhub-run.1"), "man dlhub-run after module load")
        #expect(result.stdout.contains("\(prefix.path)/share/man/man8/dlhubd.8"))
        #expect(result.stdout.contains("complete -o filenames -F _dlhub dlhub"), "bash completion after module load")
        #expect(result.stdout.contains("python client \(version)"))
        #expect(result.stdout.contains("zsh=\(prefix.path)/share/zsh/site-functions"))
        #expect(FileManager.default.fileExists(atPath: prefix.path + "/share/zsh/site-functions/_dlhub"))
    }
}
