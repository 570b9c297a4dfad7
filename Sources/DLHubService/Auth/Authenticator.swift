import DLHubCluster
import DLHubCore
import Foundation

/// Turns a munge credential into the caller who made it.
///
/// The seam tests replace: `MungeVerifier` asks munged; DLHubTesting has a double.
public protocol MungeVerifying: Sendable {
    /// The caller who made the credential, and the payload they put in it.
    func verify(credential: String) async throws(DLHubError) -> (caller: Caller, payload: [UInt8])
}

/// Verifies credentials with libmunge and looks the uid up in the host's account database.
public struct MungeVerifier: MungeVerifying {
    let codec: MungeCodec

    public init(codec: MungeCodec = MungeCodec()) {
        self.codec = codec
    }

    public func verify(credential: String) async throws(DLHubError) -> (caller: Caller, payload: [UInt8]) {
        let codec = self.codec
        return try await BlockingIO.run { () throws(DLHubError) -> (caller: Caller, payload: [UInt8]) in
            let identity: MungeIdentity
            do throws(MungeError) { identity = try codec.decode(credential) } catch { throw error.asDLHubError }
            guard let caller = UserDirectory.caller(uid: identity.uid, gid: identity.gid) else {
                throw DLHubError(
                    .unauthenticated,
                    "uid \(identity.uid) has no account on the service host; ask the site to make accounts consistent across hosts")
            }
            return (caller, identity.payload)
        }
    }
}

/// Authenticates API requests: `Authorization: Munge <credential>` or `Bearer <token>`.
public struct Authenticator: Sendable {
    public let munge: any MungeVerifying
    public let tokens: TokenSigner
    public let tokenLifetimeSeconds: Int
    /// This service's name for munge payloads: a credential whose payload names another service
    /// was made for that service and is refused here (it may be a replay).
    public let serviceID: String
    /// Tokens already verified, with their caller and expiry: a token is checked (HMAC, claims)
    /// once, not on every request. Keyed by the whole signed string, so only that exact token
    /// hits; bounded, and emptied when full.
    let verified = LockedBox<[String: (caller: Caller, expires: Int64)]>([:])

    public init(munge: any MungeVerifying, tokens: TokenSigner, tokenLifetimeSeconds: Int, serviceID: String = "") {
        self.munge = munge
        self.tokens = tokens
        self.tokenLifetimeSeconds = tokenLifetimeSeconds
        self.serviceID = serviceID
    }

    /// The payload `dlhub` puts in its munge credentials for the service `id`.
    public static func audience(_ id: String) -> String { "dlhub-service:" + id }

    public static let howTo = "send `Authorization: Munge $(munge -n)` or a bearer token from `dlhub login`"

    public func authenticate(authorization: String?, allowToken: Bool = true) async throws(DLHubError) -> Caller {
        // Trimmed only when it needs to be (the common header does not).
        let header =
            authorization.map {
                $0.first?.isWhitespace == false && $0.last?.isWhitespace == false ? $0 : $0.trimmingCharacters(in: .whitespaces)
            }
            ?? ""
        guard !header.isEmpty else { throw DLHubError(.unauthenticated, "this request needs credentials: \(Self.howTo)") }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2 else { throw DLHubError(.unauthenticated, "the Authorization header is malformed: \(Self.howTo)") }
        switch parts[0].lowercased() {
        case "munge":
            let (caller, payload) = try await munge.verify(credential: String(parts[1]))
            // An empty payload (`munge -n`) names no service; a payload naming another one is refused.
            if !payload.isEmpty, String(decoding: payload, as: UTF8.self) != Self.audience(serviceID) {
                throw DLHubError(
                    .unauthenticated,
                    "this munge credential was made for another service (its payload is not \(Self.audience(serviceID))); make one for this service, e.g. `munge -s \(Self.audience(serviceID))`, or use `dlhub`, which does"
                )
            }
            return caller
        case "bearer" where allowToken:
            let token = String(parts[1])
            let now = Int64(Date().timeIntervalSince1970)
            if let hit = verified.update({ $0[token] }), hit.expires > now { return hit.caller }
            let checked = try tokens.verify(token, now: now)
            verified.update {
                if $0.count >= 10_000 { $0.removeAll() }
                $0[token] = (checked.caller, checked.expires)
            }
            return checked.caller
        case "bearer":
            throw DLHubError(
                .unauthenticated, "a token is obtained with a munge credential, not another token: send `Authorization: Munge $(munge -n)`")
        default:
            throw DLHubError(.unauthenticated, "unknown authorization scheme '\(parts[0])': \(Self.howTo)")
        }
    }

    /// Issues a token for the caller.
    public func issueToken(for caller: Caller) -> (token: String, expires: Int64) {
        let expires = Int64(Date().timeIntervalSince1970) + Int64(tokenLifetimeSeconds)
        return (tokens.sign(caller, expires: expires), expires)
    }

    /// The service's id: derived from its token key, so it is stable across restarts and changes
    /// when the key is rotated.
    public static func serviceID(key: [UInt8]) -> String {
        String(ContentDigest.sha256Hex(key + Array("dlhub-service-id".utf8)).prefix(32))
    }

    /// Loads the token key from the state directory, creating it (mode 0600) on first start.
    public static func loadOrCreateKey(stateDirectory: String) throws(DLHubError) -> [UInt8] {
        let path = stateDirectory + "/token.key"
        if let attributes = try? FileManager.default.attributesOfItem(atPath: path) {
            // Whoever reads the key can mint tokens for anyone.
            let permissions = (attributes[.posixPermissions] as? NSNumber)?.uint16Value ?? 0o777
            let owner = (attributes[.ownerAccountID] as? NSNumber)?.uint32Value
            guard attributes[.type] as? FileAttributeType == .typeRegular, permissions & 0o077 == 0, owner == getuid() else {
                throw DLHubError(
                    .internal,
                    "the token key \(path) must be a file only the service account can read (it has mode \(String(permissions, radix: 8)), owner uid \(owner.map(String.init) ?? "?")). Fix: chmod 600 \(path) and chown it to the service account, or delete it to make a new one (every token is then revoked)"
                )
            }
        }
        if let data = FileManager.default.contents(atPath: path), data.count >= 32 { return Array(data) }
        var rng = SystemRandomNumberGenerator()
        let key = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
        guard FileManager.default.createFile(atPath: path, contents: Data(key), attributes: [.posixPermissions: 0o600]) else {
            throw DLHubError(.internal, "cannot write the token key \(path); check the state directory's permissions")
        }
        return key
    }
}
