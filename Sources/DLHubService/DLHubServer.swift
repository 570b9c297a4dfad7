import DLHubCore
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// Assembles the service from its configuration: registry, index, authentication and the HTTP
/// application. `dlhubd`'s `main` runs what this returns in one `ServiceGroup`.
public struct DLHubServer: Sendable {
    public let configuration: ServiceConfiguration
    public let catalog: ServableCatalog
    public let authenticator: Authenticator
    let logger: Logger

    public init(configuration: ServiceConfiguration, munge: any MungeVerifying, logger: Logger) async throws(DLHubError) {
        self.configuration = configuration
        self.logger = logger
        do {
            try FileManager.default.createDirectory(
                atPath: configuration.stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw DLHubError(
                .internal, "cannot create the state directory \(configuration.stateDirectory): \(error.localizedDescription)", cause: error)
        }
        let registry = try Registry(root: configuration.registryRoot)
        let index = try SearchIndex(path: configuration.stateDirectory + "/index.sqlite")
        catalog = ServableCatalog(registry: registry, index: index, logger: logger)
        try await catalog.rebuildIndex()
        let key = try Authenticator.loadOrCreateKey(stateDirectory: configuration.stateDirectory)
        authenticator = Authenticator(munge: munge, tokens: TokenSigner(key: key), tokenLifetimeSeconds: configuration.tokenLifetimeSeconds)
    }

    public func makeRouter(metricsText: @escaping @Sendable () -> String = { "" }) -> Router<APIRequestContext> {
        let router = Router(context: APIRequestContext.self)
        router.add(middleware: ErrorMiddleware())
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: AuthenticationMiddleware(authenticator: authenticator))
        APIRoutes(catalog: catalog, authenticator: authenticator, maxUploadBytes: configuration.maxUploadBytes, metricsText: metricsText)
            .register(on: router)
        return router
    }

    /// The HTTP application; once listening it writes `service.json` into the registry.
    public func makeApplication(metricsText: @escaping @Sendable () -> String = { "" }) -> some ApplicationProtocol {
        let configuration = self.configuration
        let registry = catalog.registry
        let logger = self.logger
        return Application(
            router: makeRouter(metricsText: metricsText),
            configuration: .init(address: .hostname(configuration.listenHost, port: configuration.listenPort), serverName: "dlhubd"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? configuration.listenPort
                let url = configuration.publicURL ?? "http://\(Self.advertisedHost(configuration.listenHost)):\(port)"
                let info: JSONValue = [
                    "url": .string(url), "pid": .int(Int64(getpid())), "host": .string(ProcessInfo.processInfo.hostName),
                    "started": .string(ISO8601DateFormatter().string(from: Date())), "api": "v1",
                ]
                do throws(DLHubError) { try registry.writeServiceFile(info) } catch {
                    logger.error("cannot write service.json", metadata: ["error": "\(error)"])
                }
                logger.info("dlhubd listening", metadata: ["http.url": "\(url)", "registry.root": "\(configuration.registryRoot)"])
            },
            logger: logger)
    }

    static func advertisedHost(_ listenHost: String) -> String {
        listenHost == "0.0.0.0" || listenHost == "::" ? ProcessInfo.processInfo.hostName : listenHost
    }
}
