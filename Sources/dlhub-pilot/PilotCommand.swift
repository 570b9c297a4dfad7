import ArgumentParser
import DLHubCluster
import DLHubCore
import DLHubPilot
import Foundation
import Logging

/// `dlhub-pilot`: runs inside a Slurm pilot job (one per node, started by `srun`), keeps
/// servable workers resident and runs the batches `dlhubd` hands it.
@main
struct PilotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlhub-pilot", abstract: "DLHub pilot: keeps models resident on a compute node and runs batches for dlhubd.",
        version: DLHubVersion.current)

    @Option(help: "HOST:PORT of dlhubd's pilot listener.") var service: String
    @Option(help: "The pool this pilot belongs to.") var pool: String = "default"
    @Option(help: "Python interpreter for Python workers.") var python: String = "python3"
    @Option(name: .customLong("worker-script"), help: "Path of dlhub_worker.py.") var workerScript: String
    @Option(name: .customLong("max-workers"), help: "Workers resident at most.") var maxWorkers: Int = 8
    @Option(help: "Cores to use (default: SLURM_CPUS_ON_NODE).") var cores: Int?
    @Option(help: "How workers are isolated: bubblewrap, apptainer or none.") var isolation: String = "bubblewrap"
    @Option(help: "The bubblewrap program.") var bubblewrap: String = "bwrap"
    @Option(name: .customLong("read-only"), help: "A directory workers may read (repeatable): site software trees.")
    var readOnly: [String] = []
    @Option(name: .customLong("never-bind"), help: "A directory no worker may see whatever a file says (repeatable).")
    var neverBind: [String] = []
    @Option(name: .customLong("container-command"), help: "One word of the Apptainer command template (repeatable, in order).")
    var containerCommand: [String] = []
    @Option(name: .customLong("worker-tmp-mb"), help: "Size of each worker's private /tmp, /dev/shm and /scratch, in MB.")
    var workerTmpMB: Int = 1024
    @Option(
        name: .customLong("worker-max-processes"), help: "Processes and threads one worker may run at once; past it the worker is stopped.")
    var workerMaxProcesses: Int = 128
    @Flag(name: .customLong("worker-network"), help: "Let workers keep the node's network.") var workerNetwork = false
    @Option(
        name: .customLong("service-file"),
        help: "A file where dlhubd writes its pilot address (HOST:PORT); re-read when reconnecting after a service restart.")
    var serviceFile: String?
    @Option(
        name: .customLong("reconnect-grace"),
        help: "Seconds the pilot keeps its workers and tries to reconnect after losing dlhubd (0: end at once).")
    var reconnectGrace: Double = 0

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let env = ProcessInfo.processInfo.environment
        guard let colon = service.lastIndex(of: ":"), let port = Int(service[service.index(after: colon)...]) else {
            throw ValidationError("--service must be HOST:PORT")
        }
        guard let jobText = env["SLURM_JOB_ID"], let jobID = UInt32(jobText) else {
            throw ValidationError("SLURM_JOB_ID is not set: dlhub-pilot runs inside a Slurm job that dlhubd submitted")
        }
        guard let secret = env[PilotProof.environmentVariable], PilotProof.isWellFormed(secret) else {
            throw ValidationError(
                "\(PilotProof.environmentVariable) is not set: dlhub-pilot runs inside a Slurm job that dlhubd submitted, which gives it one"
            )
        }
        // Nothing the pilot starts may inherit the secret.
        unsetenv(PilotProof.environmentVariable)
        let mode = try IsolationMode(setting: isolation)
        var logger = Logger(label: "dlhub-pilot")
        logger[metadataKey: "slurm.job_id"] = "\(jobID)"
        let node = env["SLURMD_NODENAME"] ?? ProcessInfo.processInfo.hostName
        let coreCount = cores ?? Int(env["SLURM_CPUS_ON_NODE"] ?? "") ?? ProcessInfo.processInfo.activeProcessorCount
        let memory = Int(env["SLURM_MEM_PER_NODE"] ?? "") ?? Int(ProcessInfo.processInfo.physicalMemory / 1_048_576)
        let gpus = (env["CUDA_VISIBLE_DEVICES"] ?? "").split(separator: ",").count
        // The walltime end, from the controller: the pilot drains before it.
        let info = try? await LibSlurmClient(logger: logger).job(jobID)
        var settings = PilotAgent.Settings(
            python: python, workerScript: workerScript, cores: coreCount, memoryMB: memory, maxWorkers: maxWorkers)
        settings.isolation = mode
        settings.bubblewrap = bubblewrap
        settings.readOnlyPaths = readOnly
        settings.neverBound = neverBind
        if !containerCommand.isEmpty { settings.containerCommand = containerCommand }
        settings.workerTmpMB = workerTmpMB
        settings.workerMaxProcesses = max(1, workerMaxProcesses)
        settings.workerNetwork = workerNetwork
        settings.visibleDevices = env["CUDA_VISIBLE_DEVICES"]
        var options = PilotClient.Options(
            host: String(service[..<colon]), port: port, pool: pool, jobID: jobID, node: node, gpus: gpus,
            walltimeEnd: info?.endTime ?? 0, secret: secret, settings: settings)
        options.serviceFile = serviceFile
        options.reconnectGraceSeconds = max(0, reconnectGrace)

        // SIGUSR1 is Slurm's walltime warning (--signal); SIGTERM comes with scancel and at the end.
        let (signals, continuation) = AsyncStream.makeStream(of: Int32.self)
        var sources: [any DispatchSourceSignal] = []
        for sig in [SIGUSR1, SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { continuation.yield(sig) }
            source.resume()
            sources.append(source)
        }
        logger.info(
            "pilot starting",
            metadata: ["node": "\(node)", "cores": "\(coreCount)", "service": "\(service)", "isolation": "\(mode.rawValue)"])
        try await PilotClient(options: options, logger: logger).run(signals: signals)
        _ = sources
        logger.info("pilot done")
    }
}
