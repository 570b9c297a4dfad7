import Foundation

/// The local Slurm cluster (`slurm/dev-cluster`), which cluster tests need running.
public enum DevCluster {
    public static var defaultConf: String {
        (ProcessInfo.processInfo.environment["DLHUB_CLUSTER_DIR"] ?? "/var/tmp/dlhub-dev-cluster") + "/etc/slurm.conf"
    }

    /// Points libslurm at the dev cluster and fails loudly when it is not up.
    public static func require() throws {
        let conf = ProcessInfo.processInfo.environment["SLURM_CONF"] ?? defaultConf
        guard FileManager.default.fileExists(atPath: conf) else {
            throw TestSetupError("no Slurm configuration at \(conf): start the local cluster with `sudo slurm/dev-cluster up`")
        }
        setenv("SLURM_CONF", conf, 1)
        let ping = try Subprocess.run("/usr/bin/scontrol", ["ping"])
        guard ping.stdout.contains("UP") else {
            throw TestSetupError("slurmctld is not answering (\(ping.stdout)\(ping.stderr)): start it with `sudo slurm/dev-cluster up`")
        }
    }

    /// Runs a Slurm client command (`squeue`, `scancel`, ...) against the dev cluster.
    public static func command(_ name: String, _ args: [String]) throws -> Subprocess.Result {
        try Subprocess.run("/usr/bin/\(name)", args)
    }
}
