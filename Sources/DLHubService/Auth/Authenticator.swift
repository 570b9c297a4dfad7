import DLHubCluster
import DLHubCore
import Foundation

/// Turns a munge credential into the caller who made it.
///
/// The seam tests replace: `MungeVerifier` asks munged; DLHubTesting has a double.
public protocol MungeVerifying: Sendable {
    /// The caller who made the credential, and the payload they put in it.
    func verify(credential: String) async throws(DLHubError) -> (caller: Caller, payload: [UInt8])
    /// The account as it is now (its groups change; nil when it is gone): a token's claims are
    /// checked against it (see `Authenticator.groupRefreshSeconds`).
    func currentCaller(uid: UInt32, gid: UInt32) async -> Caller?
}

extension MungeVerifying {
    public func currentCaller(uid: UInt32, gid: UInt32) async -> Caller? {
        try? await BlockingIO.run { () throws(DLHubError) -> Caller? in UserDirectory.caller(uid: uid, gid: gid) }
    }
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
    /// A token carries its holder's groups as they were when it was issued; they are looked up
    /// again at most this long after the last look (and on a token's first use by this service):
    /// removing a user from a group takes effect for their tokens within this bound, not at the
    /// token's expiry. Requests made with munge always look up the groups.
    public let groupRefreshSeconds: Int
    /// Tokens already verified, with their caller (groups as last looked up), expiry and when the
    /// groups were looked up: a token is checked (HMAC, claims) once, not on every request. Keyed
    /// by the whole signed string, so only that exact token hits; bounded, and emptied when full.
    let verified = LockedBox<[String: (caller: Caller, expires: Int64, checked: Int64)]>([:])

    public init(
        munge: any MungeVerifying, tokens: TokenSigner, tokenLifetimeSeconds: Int, serviceID: String = "", groupRefreshSeconds: Int = 60
    ) {
        self.munge = munge
        self.tokens = tokens
        self.tokenLifetimeSeconds = tokenLifetimeSeconds
        self.serviceID = serviceID
        self.groupRefreshSeconds = max(0, groupRefreshSeconds)
    }

    /// The payload `dlhub` puts in its munge credentials for the service `id`.
    public static func audience(_ id: String) -> String { "dlhub-service:" + id }

    public static let howTo =
        "send `Authorization: Munge $(munge -s dlhub-service:ID)` with this service's ID from /healthz, or a bearer token from `dlhub login`"

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
            // A credential must name this service: one with an empty payload (`munge -n`) names
            // none, and could have been made for anything that takes munge, then relayed here
            // (by whoever squatted a port a client used); one naming another service was made
            // for it.
            if payload.isEmpty {
                throw DLHubError(
                    .unauthenticated,
                    "this munge credential names no service (an empty payload, as `munge -n` makes), so it could have been made for anything; make one for this service with `munge -s \(Self.audience(serviceID))`, or use `dlhub` or `dlhub login`, which do"
                )
            }
            if String(decoding: payload, as: UTF8.self) != Self.audience(serviceID) {
                throw DLHubError(
                    .unauthenticated,
                    "this munge credential was made for another service (its payload is not \(Self.audience(serviceID))); make one for this service, e.g. `munge -s \(Self.audience(serviceID))`, or use `dlhub`, which does"
                )
            }
            return caller
        case "bearer" where allowToken:
            let token = String(parts[1])
            let now = Int64(Date().timeIntervalSince1970)
            let hit = verified.update({ $0[token] })
            if let hit, hit.expires > now, now - hit.checked < Int64(groupRefreshSeconds) { return hit.caller }
            let claimed: (caller: Caller, expires: Int64)
            if let hit, hit.expires > now { claimed = (hit.caller, hit.expires) } else { claimed = try tokens.verify(token, now: now) }
            // The groups as they are now, not as they were when the token was issued.
            guard let current = await munge.currentCaller(uid: claimed.caller.uid, gid: claimed.caller.gid),
                current.login == claimed.caller.login
            else {
                verified.update { $0.removeValue(forKey: token) }
                throw DLHubError(
                    .unauthenticated, "the account this token was issued to (\(claimed.caller.login)) no longer exists here; sign in again")
            }
            verified.update {
                if $0.count >= 10_000 { $0.removeAll() }
                $0[token] = (current, claimed.expires, now)
            }
            return current
        case "bearer":
            throw DLHubError(
                .unauthenticated,
                "a token is obtained with a munge credential, not another token: send `Authorization: Munge $(munge -s \(Self.audience(serviceID)))`"
            )
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
