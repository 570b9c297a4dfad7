import DLHubCore
import Foundation

/// A pilot job: the template from `slurm/` with a pool's values filled in, and the Slurm options
/// set on the job. The one place where a pool becomes a Slurm submission.
public struct PilotScript: Sendable {
    public let template: String

    public init(templatePath: String) throws(DLHubError) {
        guard let data = FileManager.default.contents(atPath: templatePath) else {
            throw DLHubError(.internal, "cannot read the pilot job template \(templatePath); set pilot_template in the configuration")
        }
        template = String(decoding: data, as: UTF8.self)
    }

    /// The submission for one pilot job of `pool`, connecting to `service` and proving itself
    /// with `secret` (which travels in the job's environment, never in the script).
    public func submission(for pool: PoolConfiguration, settings: PilotManager.Settings, service: String, secret: String) -> JobSubmission {
        let signalSeconds = Int(PoolPolicy.drainLead(walltimeMinutes: pool.walltimeMinutes))
        var job = JobSubmission(
            name: "dlhub-pilot-\(pool.name)",
            script: render(pool: pool, settings: settings, service: service, signalSeconds: signalSeconds),
            workDir: settings.logDirectory)
        job.partition = pool.partition
        job.account = pool.account
        job.qos = pool.qos
        job.constraint = pool.constraint
        job.gres = pool.gres
        job.nodes = pool.nodes
        job.cpusPerTask = pool.coresPerNode
        job.timeLimitMinutes = pool.walltimeMinutes
        job.outputPath = settings.logDirectory + "/pilot-%j.out"
        var environment = settings.environment.filter {
            !$0.hasPrefix(PilotProof.environmentVariable + "=") && !$0.hasPrefix("MODULEPATH=")
        }
        environment.append("DLHUB_POOL=\(pool.name)")
        environment.append("\(PilotProof.environmentVariable)=\(secret)")
        if !settings.sandbox.modulePath.isEmpty { environment.append("MODULEPATH=" + settings.sandbox.modulePath.joined(separator: ":")) }
        job.environment = environment
        job.warningSignal = (signal: SIGUSR1, secondsBefore: signalSeconds)
        // A pilot that fails is replaced by the manager; Slurm requeueing it would only hold its place.
        job.requeue = false
        job.comment = settings.jobComment
        return job
    }

    func render(pool p: PoolConfiguration, settings: PilotManager.Settings, service: String, signalSeconds: Int) -> String {
        let loads =
            p.modules.isEmpty
            ? "# (no modules to load for this pool)" : p.modules.map { "module load \(Self.quote($0))" }.joined(separator: "\n")
        let values: [String: String] = [
            "pool": p.name, "partition": p.partition ?? "(default)", "account": p.account ?? "-", "qos": p.qos ?? "-",
            "constraint": p.constraint ?? "-", "gres": p.gres ?? "-", "nodes": String(p.nodes),
            "walltime_minutes": String(p.walltimeMinutes), "signal_seconds": String(signalSeconds),
            "module_loads": loads, "service": service, "pilot": Self.quote(settings.pilotExecutable), "python": Self.quote(settings.python),
            "worker_script": Self.quote(settings.workerScript), "max_workers": String(p.maxWorkersPerPilot),
            "sandbox_options": settings.sandbox.pilotOptions(network: p.workerNetwork).map(Self.quote).joined(separator: " "),
            "reconnect_options": reconnectOptions(settings).map(Self.quote).joined(separator: " "),
        ]
        var out = template
        for (k, value) in values { out = out.replacingOccurrences(of: "{{\(k)}}", with: value) }
        return out
    }

    /// `--service-file` and `--reconnect-grace`: how a pilot finds the service again after a restart.
    func reconnectOptions(_ settings: PilotManager.Settings) -> [String] {
        var out = ["--reconnect-grace", String(settings.reconnectGraceSeconds)]
        if let file = settings.serviceFile { out += ["--service-file", file] }
        return out
    }

    static func quote(_ s: String) -> String {
        !s.isEmpty && s.allSatisfy { $0.isLetter || $0.isNumber || "/._-:=+@".contains($0) }
            ? s : "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}

/// How pilots sandbox their workers: the site's settings, passed to every pilot.
public struct SandboxSettings: Sendable, Hashable {
    public var isolation: IsolationMode = .bubblewrap
    /// The bubblewrap program on the compute nodes.
    public var bubblewrap: String = "bwrap"
    /// Site software trees workers may read (a module tree's software, `/cvmfs`, ...).
    public var readOnlyPaths: [String] = []
    /// Paths no worker sees whatever a file or setting says: the service's state directory.
    public var neverBound: [String] = []
    /// The Apptainer command template for container servables.
    public var containerCommand: [String] = ApptainerCommand.defaultTemplate
    /// Size of each worker's private `/tmp`, `/dev/shm` and `/scratch`, in MB.
    public var workerTmpMB: Int = 1024
    /// Processes and threads one worker may run at once (its own, not the service account's on the node).
    public var workerMaxProcesses: Int = 128
    /// Where Lmod finds modulefiles on the compute nodes (`MODULEPATH`), when not the default.
    public var modulePath: [String] = []

    public init() {}

    /// The `dlhub-pilot` options that carry these settings (`{{sandbox_options}}` in the template).
    public func pilotOptions(network: Bool) -> [String] {
        var out = [
            "--isolation", isolation.rawValue, "--bubblewrap", bubblewrap, "--worker-tmp-mb", String(workerTmpMB),
            "--worker-max-processes", String(workerMaxProcesses),
        ]
        for path in readOnlyPaths { out += ["--read-only", path] }
        for path in neverBound { out += ["--never-bind", path] }
        if containerCommand != ApptainerCommand.defaultTemplate {
            for word in containerCommand { out += ["--container-command", word] }
        }
        if network { out.append("--worker-network") }
        return out
    }
}
