import ArgumentParser
import DLHubCluster
import DLHubCore
import DLHubService
import Foundation
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import UnixSignals

/// `dlhubd`: the DLHub service. Bootstraps logging and metrics, then runs the service group.
@main
struct DLHubDaemon: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlhubd",
        abstract: "The DLHub model hub service: publication, discovery and serving on a Slurm cluster.",
        discussion: """
            Settings come from --config (JSON), then DLHUB_* environment variables, then these flags.
            Clients find the service through service.json, written into the registry once listening.
            """,
        version: DLHubVersion.current)

    @Option(name: .long, help: "Configuration file (JSON). Also DLHUB_CONFIG.")
    var config: String?

    @Option(name: .long, help: "Registry root on the shared filesystem. Also DLHUB_REGISTRY.")
    var registry: String?

    @Option(name: .customLong("state-dir"), help: "Service-local state directory (local disk). Also DLHUB_STATE_DIR.")
    var stateDir: String?

    @Option(name: .long, help: "HOST:PORT to listen on (port 0 picks a free port). Also DLHUB_LISTEN.")
    var listen: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = ProcessInfo.processInfo.environment["DLHUB_LOG_LEVEL"] ?? "info"

    @Option(name: .customLong("log-format"), help: "text, or json (one object per line). Also DLHUB_LOG_FORMAT.")
    var logFormat: String = ProcessInfo.processInfo.environment["DLHUB_LOG_FORMAT"] ?? "text"

    @Option(
        name: .customLong("check-config"),
        help: "Check this configuration file and exit: files, worker Python, registry, and whether Slurm accepts each pool's pilot job.")
    var checkConfig: String?

    @Flag(name: .customLong("allow-root"), help: "Run as root anyway: for a throwaway development cluster only, never on a shared one.")
    var allowRoot = false

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        switch logFormat {
        case "json": LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level) }
        case "text":
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        default: throw ValidationError("--log-format is text or json, not '\(logFormat)'")
        }
        let prometheus = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: prometheus)
        // Queue waits run from milliseconds (a warm pilot) to the cluster's queue wait (minutes).
        let waits: [Duration] = [
            .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2), .seconds(5), .seconds(10),
            .seconds(30), .seconds(60), .seconds(120), .seconds(300), .seconds(900), .seconds(1800), .seconds(3600),
        ]
        factory.durationHistogramBuckets = ["dlhub_queue_wait_seconds": waits, "dlhub_request_seconds": waits]
        factory.valueHistogramBuckets = ["dlhub_batch_size": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]]
        MetricsSystem.bootstrap(factory)
        Gauge(label: "dlhub_build_info", dimensions: [("version", DLHubVersion.current)]).record(1)
        let logger = Logger(label: "dlhubd")
        if let checkConfig { return try await Self.check(checkConfig, registry: registry, logger: logger) }
        if geteuid() == 0 {
            guard allowRoot else {
                logger.critical("\(Self.rootRefusal)")
                throw ExitCode(78)  // EX_CONFIG
            }
            logger.warning("running as root because --allow-root was given: pilots and every servable's code run as root too")
        }

        let descriptors = DescriptorLimit.raiseToHardLimit()
        logger.info("descriptor limit", metadata: ["nofile.before": "\(descriptors.before)", "nofile": "\(descriptors.now)"])
        let server: DLHubServer
        do throws(DLHubError) {
            var settings = try ServiceConfiguration.load(file: config, environment: ProcessInfo.processInfo.environment)
            if let registry { settings.registryRoot = registry }
            if let stateDir { settings.stateDirectory = stateDir }
            if let listen { try settings.setListen(listen) }

            server = try await DLHubServer(
                configuration: settings, munge: MungeVerifier(), slurm: LibSlurmClient(logger: logger), logger: logger)
        } catch {
            logger.critical("dlhubd cannot start: \(error.message)")
            throw ExitCode(1)
        }
        let services = try server.makeServices(metricsText: {
            var buffer: [UInt8] = []
            prometheus.emit(into: &buffer)
            return String(decoding: buffer, as: UTF8.self)
        })
        let group = ServiceGroup(
            configuration: .init(
                services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        SystemdNotify.send("STOPPING=1")
    }

    /// `--check-config FILE`: one line per check; exit status 1 on a problem, 2 when the file does not parse.
    static func check(_ file: String, registry: String?, logger: Logger) async throws {
        var settings: ServiceConfiguration
        do throws(DLHubError) {
            settings = try ServiceConfiguration.load(file: file, environment: ProcessInfo.processInfo.environment)
        } catch {
            print("PROBLEM configuration \(file): \(error.message)")
            throw ExitCode(2)
        }
        if let registry { settings.registryRoot = registry }
        print("ok      configuration \(file): \(settings.pools.count) pool(s)")
        // libslurm ends the process when it finds no configuration: say so first, and how to fix it.
        let slurmConf = ProcessInfo.processInfo.environment["SLURM_CONF"] ?? "/etc/slurm/slurm.conf"
        guard FileManager.default.isReadableFile(atPath: slurmConf) else {
            print("PROBLEM slurm: cannot read \(slurmConf); set SLURM_CONF to the cluster's slurm.conf")
            throw ExitCode(1)
        }
        let slurm = LibSlurmClient(logger: logger)
        let verdicts = await ConfigurationCheck.run(settings) { job async throws(DLHubError) in try await slurm.willRun(job) }
        for verdict in verdicts { print(verdict.line) }
        if verdicts.contains(where: { !$0.ok }) { throw ExitCode(1) }
    }

    static let rootRefusal = """
        dlhubd refuses to run as root: its pilots and every published servable's code would run with root's rights on \
        the compute nodes. Run it as the service account instead (scripts/service-account creates one named dlhub): \
        `runuser -u dlhub -- dlhubd ...`, or User=dlhub in a systemd unit. On a throwaway development cluster only, \
        --allow-root skips this check.
        """
}
