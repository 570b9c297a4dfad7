import DLHubCluster
import DLHubCore
import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Plain HTTP to a live `dlhubd`, authenticated as the user running the tests (root) with a
/// bearer token traded for a real munge credential.
public final class APIClient: @unchecked Sendable {
    public let baseURL: String
    let session: URLSession
    public private(set) var token: String?

    public init(url: String, connections: Int = 64) {
        baseURL = url
        let config = URLSessionConfiguration.default
        config.httpMaximumConnectionsPerHost = connections
        config.timeoutIntervalForRequest = 600
        config.timeoutIntervalForResource = 3600
        session = URLSession(configuration: config)
    }

    public struct Reply: Sendable {
        public var status: Int
        public var json: JSONValue
        /// The body as it came, for tests of its exact bytes.
        public var body: [UInt8] = []
        public var errorMessage: String { json["error"]?["message"]?.stringValue ?? "" }
    }

    /// Trades a munge credential for a token, so load tests do not pay munge per request.
    /// As the user running the tests (root), or as `user` with a credential that user made.
    public func login(as user: String? = nil) async throws {
        let id = try await serviceID()
        let credential =
            try user.map { try TestUsers.munge(as: $0, for: id) } ?? MungeCodec().encode(payload: Array(("dlhub-service:" + id).utf8))
        let reply = try await send("POST", "/v1/auth/token", authorization: "Munge " + credential)
        guard let t = reply.json["token"]?.stringValue else { throw TestSetupError("no token: \(reply.json)") }
        token = t
    }

    public func send(
        _ method: String, _ path: String, json: JSONValue? = nil, body: [UInt8]? = nil, authorization: String? = nil
    ) async throws -> Reply {
        var request = URLRequest(url: URL(string: baseURL + path)!)
        request.httpMethod = method
        if let json { request.httpBody = Data(json.encoded()) } else if let body { request.httpBody = Data(body) }
        var auth = authorization ?? token.map { "Bearer \($0)" }
        if auth == nil, path != "/healthz" {
            auth = "Munge " + (try MungeCodec().encode(payload: Array(("dlhub-service:" + (try await serviceID())).utf8)))
        }
        if let auth { request.setValue(auth, forHTTPHeaderField: "Authorization") }
        let (data, response) = try await session.data(for: request)
        return Reply(
            status: (response as? HTTPURLResponse)?.statusCode ?? 0,
            json: (try? JSONValue.parse(Array(data))) ?? .string(String(decoding: data, as: UTF8.self)), body: Array(data))
    }

    private let knownID = LockedValue<String?>(nil)

    /// The service's id (from `/healthz`): what munge credentials for it carry.
    public func serviceID() async throws -> String {
        if let id = knownID.value { return id }
        let reply = try await send("GET", "/healthz")
        guard let id = reply.json["service_id"]?.stringValue else { throw TestSetupError("no service_id in /healthz: \(reply.json)") }
        knownID.value = id
        return id
    }

    /// Publishes a servable directory (packed as the tests pack uploads).
    public func publish(directory: String) async throws -> Reply {
        try await send("POST", "/v1/servables", body: try ServingFixtures.archive(directory: directory))
    }

    /// Runs and waits for the result (following 202s).
    public func run(_ id: String, _ body: JSONValue, wait: Double = 120) async throws -> Reply {
        var reply = try await send("POST", "/v1/servables/\(id)/run?wait=\(wait)", json: body)
        let deadline = Date().addingTimeInterval(wait * 3)
        while reply.status == 202, let task = reply.json["id"]?.stringValue, Date() < deadline {
            reply = try await send("GET", "/v1/tasks/\(task)?wait=10")
        }
        return reply
    }
}

/// A value behind a lock.
public final class LockedValue<T: Sendable>: @unchecked Sendable {
    private var stored: T
    private let lock = NSLock()
    public init(_ value: T) { stored = value }
    public var value: T {
        get {
            lock.lock()
            defer { lock.unlock() }
            return stored
        }
        set {
            lock.lock()
            stored = newValue
            lock.unlock()
        }
    }
}
