import DLHubCluster
import DLHubCore
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle

/// Assembles the service from its configuration: registry, index, authentication and the HTTP
/// application. `dlhubd`'s `main` runs what this returns in one `ServiceGroup`.
public struct DLHubServer: Sendable {
    public let configuration: ServiceConfiguration
    public let catalog: ServableCatalog
    /// The URL clients reach the service at, once it listens (citations name it).
    let advertisedURL = LockedBox("")
    public let authenticator: Authenticator
    public let tasks: TaskStore
    public let waiters: TaskWaiters
    public let dispatcher: Dispatcher
    public let runner: Runner
    public let pilots: PilotManager
    public let listener: PilotListener
    public let environments: EnvironmentStore
    /// The web catalogue's sign-in codes and browser sessions.
    public let webSessions: WebSessions
    public let pools: [PoolConfiguration]
    /// The HTTP API's TLS settings, when `tls_certificate` and `tls_key` are configured.
    let tls: TLSConfiguration?
    let logger: Logger

    public init(
        configuration: ServiceConfiguration, munge: any MungeVerifying, slurm: any SlurmScheduler, logger: Logger
    ) async throws(DLHubError) {
        self.configuration = configuration
        self.logger = logger
        tls = try Self.loadTLS(configuration)
        do {
            try FileManager.default.createDirectory(
                atPath: configuration.stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw DLHubError(
                .internal, "cannot create the state directory \(configuration.stateDirectory): \(error.localizedDescription)", cause: error)
        }
        // Uploads are spooled here on their way in; what a crash left is thrown away.
        let uploads = configuration.stateDirectory + "/uploads"
        try? FileManager.default.removeItem(atPath: uploads)
        try? FileManager.default.createDirectory(atPath: uploads, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let registry = try Registry(root: configuration.registryRoot)
        let index = try SearchIndex(path: configuration.stateDirectory + "/index.sqlite")
        catalog = ServableCatalog(registry: registry, index: index, logger: logger)
        try await catalog.rebuildIndex()
        let key = try Authenticator.loadOrCreateKey(stateDirectory: configuration.stateDirectory)
        authenticator = Authenticator(
            munge: munge, tokens: TokenSigner(key: key), tokenLifetimeSeconds: configuration.tokenLifetimeSeconds,
            serviceID: Authenticator.serviceID(key: key), groupRefreshSeconds: configuration.tokenGroupRefreshSeconds)
        webSessions = WebSessions(
            sessionLifetimeSeconds: Double(configuration.webSessionLifetimeSeconds),
            groupRefreshSeconds: Double(configuration.tokenGroupRefreshSeconds),
            currentCaller: { [munge] caller in await munge.currentCaller(uid: caller.uid, gid: caller.gid) })

        // Serving: durable tasks, batched dispatch, pilot jobs.
        pools = configuration.pools.isEmpty ? [.clusterDefault] : configuration.pools
        tasks = try TaskStore(path: configuration.stateDirectory + "/tasks.sqlite", durable: configuration.durableTasks)
        waiters = TaskWaiters()
        var limits = configuration.dispatch
        // A batch's inputs stay well below the frame that carries them.
        limits.batchBytes = min(limits.batchBytes, configuration.pilotFrameBytes / 4)
        dispatcher = Dispatcher(store: tasks, waiters: waiters, limits: limits, logger: logger)
        environments = EnvironmentStore(
            settings: configuration.environments, registryRoot: configuration.registryRoot, defaultPython: configuration.python,
            logger: logger)
        try await environments.start()
        let dispatcher = self.dispatcher
        await environments.setListener { id, status in await dispatcher.environmentFinished(id, status: status) }
        runner = Runner(
            catalog: catalog, store: tasks, dispatcher: dispatcher, waiters: waiters, environments: environments, pools: pools,
            logger: logger)
        var pilotSettings = try Self.pilotSettings(configuration)
        pilotSettings.instance = authenticator.serviceID
        try? FileManager.default.createDirectory(
            atPath: pilotSettings.logDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        pilots = PilotManager(settings: pilotSettings, slurm: slurm, dispatcher: dispatcher, logger: logger)
        let manager = pilots
        var listenerLimits = PilotListener.Limits()
        listenerLimits.frameBytes = configuration.pilotFrameBytes
        listener = PilotListener(
            host: configuration.pilotListenHost, port: configuration.pilotListenPort, dispatcher: dispatcher, limits: listenerLimits,
            logger: logger,
            job: { await manager.listenerJob($0) })
        try await runner.restore()
    }

    /// What the pilot manager submits with: the pools, the installed files, the template.
    public static func pilotSettings(_ configuration: ServiceConfiguration) throws(DLHubError) -> PilotManager.Settings {
        let files = try InstalledFiles(configuration: configuration)
        // Pilot jobs get the service's environment, minus what belongs to another job or secret.
        let environment = ProcessInfo.processInfo.environment.filter {
            !$0.key.hasPrefix("SLURM_JOB") && !$0.key.hasPrefix("DLHUB_PILOT") && $0.key != "MUNGE_SOCKET"
        }.map { "\($0.key)=\($0.value)" }.sorted()
        var sandbox = configuration.sandbox
        sandbox.neverBound.append(configuration.stateDirectory)
        var settings = PilotManager.Settings(
            pools: configuration.pools.isEmpty ? [.clusterDefault] : configuration.pools,
            script: try PilotScript(templatePath: files.template),
            pilotExecutable: files.pilot, workerScript: files.workerScript, python: configuration.python,
            logDirectory: configuration.registryRoot + "/.pilot-logs", environment: environment, sandbox: sandbox)
        settings.jobTable = configuration.stateDirectory + "/pilot-jobs.json"
        settings.serviceFile = settings.logDirectory + "/service-address"
        settings.reconnectGraceSeconds = configuration.pilotReconnectGraceSeconds
        settings.keepPilotsOnStop = configuration.pilotsOnStop == .keep
        return settings
    }

    /// Everything `dlhubd` runs: the HTTP application, the pilot listener and the pilot manager.
    public func makeServices(metricsText: @escaping @Sendable () -> String = { "" }) throws -> [any Service] {
        let listener = self.listener, manager = self.pilots, configuration = self.configuration
        return [
            try makeApplication(metricsText: metricsText),
            listener,
            Housekeeping(
                tasks: tasks, dispatcher: dispatcher, retentionSeconds: configuration.resultRetentionSeconds, environments: environments,
                catalog: catalog),
            PilotManagerService(manager: manager) {
                let port = await listener.listeningPort()
                return "\(Self.advertisedHost(configuration.pilotListenHost)):\(port)"
            },
            // Last, so that a graceful stop (which goes through the services from the last)
            // begins by answering every waiting request.
            WaitRelease(dispatcher: dispatcher, waiters: waiters),
        ]
    }

    public func makeRouter(metricsText: @escaping @Sendable () -> String = { "" }) -> Router<APIRequestContext> {
        let router = Router(context: APIRequestContext.self)
        if configuration.accessLog { router.add(middleware: AccessLogMiddleware(logger: Logger(label: "dlhubd.access"))) }
        router.add(middleware: ErrorMiddleware())
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: AuthenticationMiddleware(authenticator: authenticator))
        APIRoutes(
            catalog: catalog, authenticator: authenticator, environments: environments, runner: runner,
            maxUploadBytes: configuration.maxUploadBytes, archiveLimits: configuration.archiveLimits,
            uploads: configuration.stateDirectory + "/uploads", metricsText: metricsText
        ).register(on: router)
        AdminRoutes(
            environments: environments, catalog: catalog,
            admins: Set(configuration.admins + ["root", UserDirectory.loginName(uid: getuid()) ?? "root"])
        )
        .register(on: router)
        CitationRoutes(catalog: catalog, advertisedURL: advertisedURL).register(on: router)
        ServingRoutes(runner: runner, store: tasks, waiters: waiters, manager: pilots, maxRequestBytes: configuration.maxRunRequestBytes)
            .register(on: router)
        WebRoutes(
            catalog: catalog, environments: environments, usage: dispatcher.served, sessions: webSessions,
            serviceID: authenticator.serviceID, advertisedURL: advertisedURL, tls: tls != nil,
            cookiePath: WebRoutes.cookiePath(publicURL: configuration.publicURL)
        ).register(on: router)
        return router
    }

    /// The HTTP application; once listening it writes `service.json` into the registry.
    public func makeApplication(metricsText: @escaping @Sendable () -> String = { "" }) throws -> some ApplicationProtocol {
        let configuration = self.configuration
        let registry = catalog.registry
        let logger = self.logger
        let serviceID = authenticator.serviceID
        // A connection that sends no request (or only part of its headers) is closed after this.
        // Never above what the descriptor limit leaves: a process whose table is full is ended
        // by libdispatch (its thread-pool monitor traps when it cannot open /proc/self/task/...).
        let ceiling = ConnectionLimiter.defaultTotal(descriptorLimit: DescriptorLimit.current)
        if let wanted = configuration.httpMaxConnections, wanted > ceiling {
            logger.warning(
                "http_max_connections is above what the descriptor limit allows; using the lower figure",
                metadata: ["http.max_connections": "\(wanted)", "http.limit": "\(ceiling)", "nofile": "\(DescriptorLimit.current)"])
        }
        let limiter = ConnectionLimiter(
            perPeer: configuration.httpMaxConnectionsPerPeer, total: min(configuration.httpMaxConnections ?? ceiling, ceiling),
            logger: logger)
        let http: HTTPServerBuilder = .http1(
            configuration: .init(
                additionalChannelHandlers: [limiter.handler()], idleTimeout: .seconds(Int64(configuration.httpIdleTimeoutSeconds))))
        let scheme = tls == nil ? "http" : "https"
        let advertisedURL = self.advertisedURL
        if let publicURL = configuration.publicURL { advertisedURL.value = publicURL }
        return Application(
            router: makeRouter(metricsText: metricsText),
            server: try tls.map { try .tls(http, tlsConfiguration: $0) } ?? http,
            // A deep accept queue (the kernel caps it at net.core.somaxconn): a flood of 2,000
            // connections from one host overflowed the default 256 and the kernel reset another
            // user's new connection (found by the soak).
            configuration: .init(
                address: .hostname(configuration.listenHost, port: configuration.listenPort), serverName: "dlhubd", backlog: 4096),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? configuration.listenPort
                let url = configuration.publicURL ?? "\(scheme)://\(Self.advertisedHost(configuration.listenHost)):\(port)"
                advertisedURL.value = url
                let info: JSONValue = [
                    "url": .string(url), "pid": .int(Int64(getpid())), "host": .string(ProcessInfo.processInfo.hostName),
                    "service_id": .string(serviceID),
                    "started": .string(ISO8601DateFormatter().string(from: Date())), "api": "v1",
                ]
                do throws(DLHubError) { try registry.writeServiceFile(info) } catch {
                    logger.error("cannot write service.json", metadata: ["error": "\(error)"])
                }
                logger.info("dlhubd listening", metadata: ["http.url": "\(url)", "registry.root": "\(configuration.registryRoot)"])
                // systemd (Type=notify): ready once clients can find the service and reach it.
                SystemdNotify.send("READY=1\nSTATUS=listening on \(url)")
            },
            logger: logger)
    }

    /// The certificate chain and key for HTTPS, read at start (a bad file stops the start, saying which).
    static func loadTLS(_ configuration: ServiceConfiguration) throws(DLHubError) -> TLSConfiguration? {
        guard let certificate = configuration.tlsCertificate, let key = configuration.tlsKey else {
            if configuration.tlsCertificate != nil || configuration.tlsKey != nil {
                throw DLHubError(.badRequest, "tls_certificate and tls_key go together: set both (PEM files) or neither")
            }
            return nil
        }
        if let attributes = try? FileManager.default.attributesOfItem(atPath: key),
            let mode = (attributes[.posixPermissions] as? NSNumber)?.uint16Value, mode & 0o077 != 0
        {
            throw DLHubError(.badRequest, "the TLS key \(key) is readable by others (mode \(String(mode, radix: 8))); chmod 600 \(key)")
        }
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(certificate).map { NIOSSLCertificateSource.certificate($0) }
            return TLSConfiguration.makeServerConfiguration(
                certificateChain: chain, privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
        } catch {
            throw DLHubError(.badRequest, "cannot use the TLS certificate \(certificate) and key \(key): \(error)", cause: error)
        }
    }

    static func advertisedHost(_ listenHost: String) -> String {
        listenHost == "0.0.0.0" || listenHost == "::" ? ProcessInfo.processInfo.hostName : listenHost
    }
}
