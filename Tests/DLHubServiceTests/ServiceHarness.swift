import DLHubCore
import DLHubService
import DLHubTesting
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore

/// A `DLHubServer` over a scratch registry and state directory, with real munge.
struct ServiceHarness {
    let directory: TemporaryDirectory
    let server: DLHubServer
    var registryRoot: String { directory.file("registry") }

    init(maxUploadBytes: Int = 1 << 20, directory: TemporaryDirectory? = nil, stateName: String = "state") async throws {
        try TestUsers.require()
        let directory = try directory ?? TemporaryDirectory("dlhub-service")
        self.directory = directory
        var config = ServiceConfiguration(registryRoot: directory.file("registry"), stateDirectory: directory.file(stateName))
        config.maxUploadBytes = maxUploadBytes
        // Environments are built by the end-to-end tests; these tests publish models that are not real.
        config.environments.installer = .none
        server = try await DLHubServer(configuration: config, munge: MungeVerifier(), slurm: FakeSlurm(), logger: Logger(label: "test"))
    }

    func withClient<T: Sendable>(_ body: @Sendable (Client) async throws -> T) async throws -> T {
        let app = Application(router: server.makeRouter())
        let id = server.authenticator.serviceID
        return try await app.test(.router) { client in try await body(Client(inner: client, serviceID: id)) }
    }

    /// Directory names of the published versions of owner/name, to check nothing was written.
    func versionDirectories(_ owner: String, _ name: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: registryRoot + "/servables/\(owner)/\(name)")) ?? []).sorted()
    }

    func everythingUnderServables() -> [String] {
        FileManager.default.subpaths(atPath: registryRoot + "/servables") ?? []
    }

    func stagingIsEmpty() -> Bool {
        ((try? FileManager.default.contentsOfDirectory(atPath: registryRoot + "/.staging")) ?? []).isEmpty
    }
}

/// Requests as a given Unix user, each with a fresh munge credential made by that user.
struct Client: Sendable {
    let inner: any TestClientProtocol
    /// What the credentials name (the service's id).
    let serviceID: String

    struct Reply {
        var status: HTTPResponse.Status
        var json: JSONValue
        var errorMessage: String { json["error"]?["message"]?.stringValue ?? "" }
    }

    func send(_ method: HTTPRequest.Method, _ uri: String, as user: String?, body: [UInt8]? = nil) async throws -> Reply {
        var headers: HTTPFields = [:]
        if let user { headers[.authorization] = "Munge " + (try TestUsers.munge(as: user, for: serviceID)) }
        return try await send(method, uri, headers: headers, body: body)
    }

    func send(_ method: HTTPRequest.Method, _ uri: String, headers: HTTPFields, body: [UInt8]? = nil) async throws -> Reply {
        try await inner.execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(bytes: $0) }) { response in
            let bytes = Array(buffer: response.body)
            return Reply(status: response.status, json: (try? JSONValue.parse(bytes)) ?? .string(String(decoding: bytes, as: UTF8.self)))
        }
    }

    func publish(_ doc: JSONValue, as user: String, files: [String: [UInt8]] = ["model.joblib": Array("model".utf8)]) async throws -> Reply
    {
        try await send(.post, "/v1/servables", as: user, body: ServableFixtures.archive(doc, files: files))
    }
}
