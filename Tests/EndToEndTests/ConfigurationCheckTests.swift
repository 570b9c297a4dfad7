import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// `dlhubd --check-config FILE` against the real Slurm controller: a verdict per pool, the pool
/// and partition named when Slurm would refuse its pilot job, and nothing submitted.
@Suite struct ConfigurationCheckTests {
    init() throws { try DevCluster.require() }

    func check(_ config: JSONValue) throws -> Subprocess.Result {
        let dir = try TemporaryDirectory("dlhub-check")
        let file = dir.file("dlhubd.json")
        _ = FileManager.default.createFile(atPath: file, contents: Data(config.encoded(pretty: true)))
        let env = ["SLURM_CONF": ProcessInfo.processInfo.environment["SLURM_CONF"] ?? DevCluster.defaultConf, "PATH": "/usr/bin:/bin"]
        return try Subprocess.run(try TestInstall.executable("dlhubd"), ["--check-config", file], environment: env)
    }

    func pilotJobs() throws -> String {
        try DevCluster.command("squeue", ["-h", "--states=all", "-o", "%j"]).stdout
    }

    @Test func aGoodConfigurationGetsAVerdictPerPoolAndABadPartitionIsNamed() throws {
        let tag = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let before = try pilotJobs()
        let good: JSONValue = [
            "registry_root": .string("/tmp/dlhub-check-registry-\(tag)"), "python": .string(TestInstall.workerPython),
            "pools": [
                ["name": .string("cpu-\(tag)"), "partition": "cpu", "walltime_minutes": 30, "cores_per_node": 2],
                ["name": .string("big-\(tag)"), "partition": "bigmem", "walltime_minutes": 30],
            ],
        ]
        let ok = try check(good)
        #expect(ok.status == 0, "\(ok.stdout)\(ok.stderr)")
        #expect(
            ok.stdout.contains("ok      pool cpu-\(tag): Slurm accepts its pilot job (partition cpu, 1 node(s), 2 core(s), 30 min)"),
            "\(ok.stdout)")
        #expect(ok.stdout.contains("ok      pool big-\(tag): Slurm accepts its pilot job (partition bigmem"), "\(ok.stdout)")
        #expect(ok.stdout.contains("ok      python"))

        let bad = good.setting(
            ["pools"],
            to: [["name": .string("cpu-\(tag)"), "partition": "cpu"], ["name": .string("gpu-\(tag)"), "partition": "nosuchpartition"]])
        let refused = try check(bad)
        #expect(refused.status == 1)
        let line = refused.stdout.split(separator: "\n").first { $0.hasPrefix("PROBLEM pool gpu-\(tag):") } ?? ""
        #expect(line.contains("partition 'nosuchpartition' does not exist"), "\(refused.stdout)")
        #expect(refused.stdout.contains("ok      pool cpu-\(tag)"), "the good pool still gets its verdict")

        let missingPython = good.setting(["python"], to: "/nonexistent/bin/python")
        let noPython = try check(missingPython)
        #expect(noPython.status == 1)
        #expect(noPython.stdout.contains("PROBLEM python: /nonexistent/bin/python is not an executable here"))

        let dir = try TemporaryDirectory("dlhub-check")
        let broken = dir.file("broken.json")
        try "{\"pools\": [".write(toFile: broken, atomically: true, encoding: .utf8)
        let unparsable = try Subprocess.run(try TestInstall.executable("dlhubd"), ["--check-config", broken])
        #expect(unparsable.status == 2)
        #expect(unparsable.stdout.contains("is not valid JSON"))

        // Nothing was submitted.
        #expect(try pilotJobs() == before)
    }
}
