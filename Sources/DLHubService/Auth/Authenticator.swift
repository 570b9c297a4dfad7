import DLHubCluster
import DLHubCore
import Foundation

/// Turns a munge credential into the caller who made it.
///
/// The seam tests replace: `MungeVerifier` asks munged; DLHubTesting has a double.
public protocol MungeVerifying: Sendable {
    func verify(credential: String) async throws(DLHubError) -> Caller
}

/// Verifies credentials with libmunge and looks the uid up in the host's account database.
public struct MungeVerifier: MungeVerifying {
    let codec: MungeCodec

    public init(codec: MungeCodec = MungeCodec()) {
        self.codec = codec
    }

    public func verify(credential: String) async throws(DLHubError) -> Caller {
        let codec = self.codec
        return try await BlockingIO.run { () throws(DLHubError) in
            let identity: MungeIdentity
            do throws(MungeError) { identity = try codec.decode(credential) } catch { throw error.asDLHubError }
            guard let caller = UserDirectory.caller(uid: identity.uid, gid: identity.gid) else {
                throw DLHubError(
                    .unauthenticated,
                    "uid \(identity.uid) has no account on the service host; ask the site to make accounts consistent across hosts")
            }
            return caller
        }
    }
}

/// Authenticates API requests: `Authorization: Munge <credential>` or `Bearer <token>`.
public struct Authenticator: Sendable {
    public let munge: any MungeVerifying
    public let tokens: TokenSigner
    public let tokenLifetimeSeconds: Int

    public init(munge: any MungeVerifying, tokens: TokenSigner, tokenLifetimeSeconds: Int) {
        self.munge = munge
        self.tokens = tokens
        self.tokenLifetimeSeconds = tokenLifetimeSeconds
    }

    public static let howTo = "send `Authorization: Munge $(munge -n)` or a bearer token from `dlhub login`"

    public func authenticate(authorization: String?, allowToken: Bool = true) async throws(DLHubError) -> Caller {
        guard let header = authorization?.trimmingCharacters(in: .whitespaces), !header.isEmpty else {
            throw DLHubError(.unauthenticated, "this request needs credentials: \(Self.howTo)")
        }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2 else { throw DLHubError(.unauthenticated, "the Authorization header is malformed: \(Self.howTo)") }
        switch parts[0].lowercased() {
        case "munge":
            return try await munge.verify(credential: String(parts[1]))
        case "bearer" where allowToken:
            return try tokens.verify(String(parts[1]), now: Int64(Date().timeIntervalSince1970)).caller
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

    /// Loads the token key from the state directory, creating it (mode 0600) on first start.
    public static func loadOrCreateKey(stateDirectory: String) throws(DLHubError) -> [UInt8] {
        let path = stateDirectory + "/token.key"
        if let data = FileManager.default.contents(atPath: path), data.count >= 32 { return Array(data) }
        var rng = SystemRandomNumberGenerator()
        let key = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
        guard FileManager.default.createFile(atPath: path, contents: Data(key), attributes: [.posixPermissions: 0o600]) else {
            throw DLHubError(.internal, "cannot write the token key \(path); check the state directory's permissions")
        }
        return key
    }
}
