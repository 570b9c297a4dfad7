import CMunge
import DLHubCore
import Glibc

/// Why munge refused to make or accept a credential.
public struct MungeError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable {
        /// munged is not running or its socket is unreachable.
        case daemonUnreachable = "daemon_unreachable"
        case expired
        case replayed
        /// Not a credential, or not one this realm's key made.
        case invalid
        case rewound
        case unauthorized
        case other
    }

    public var kind: Kind
    public var code: Int32
    public var message: String

    public var description: String { message }

    /// The same problem as a `DLHubError` for API responses: 401, with what to do.
    public var asDLHubError: DLHubError {
        switch kind {
        case .daemonUnreachable:
            return DLHubError(.unavailable, "munge is not answering on this host (\(message)); ask the site to start munged", cause: self)
        case .replayed:
            return DLHubError(
                .unauthenticated,
                "the munge credential was already used (replayed); send a fresh one for each request, or use a token from `dlhub login`",
                cause: self)
        case .expired:
            return DLHubError(
                .unauthenticated, "the munge credential has expired; make a fresh one (clocks of login and service hosts may differ)",
                cause: self)
        default:
            return DLHubError(.unauthenticated, "the munge credential was refused: \(message)", cause: self)
        }
    }
}

/// What a decoded credential says: who made it, and its payload.
public struct MungeIdentity: Sendable, Hashable {
    public var uid: UInt32
    public var gid: UInt32
    public var payload: [UInt8]
}

/// Encodes and decodes MUNGE credentials through libmunge.
///
/// Calls talk to munged over a Unix socket and block briefly; callers on the concurrency pool
/// should use the async forms, which run the call on a dedicated thread.
public struct MungeCodec: Sendable {
    /// The munged socket, when not the default.
    public var socketPath: String?

    public init(socketPath: String? = nil) {
        self.socketPath = socketPath
    }

    /// Makes a credential carrying the calling process's uid and gid.
    public func encode(payload: [UInt8] = [], ttl: Int32? = nil) throws(MungeError) -> String {
        let ctx = munge_ctx_create()
        defer { munge_ctx_destroy(ctx) }
        if let socketPath { _ = cmunge_ctx_set_socket(ctx, socketPath) }
        if let ttl { _ = cmunge_ctx_set_ttl(ctx, ttl) }
        var cred: UnsafeMutablePointer<CChar>?
        let rc = payload.withUnsafeBytes { buf in
            munge_encode(&cred, ctx, buf.baseAddress, Int32(payload.count))
        }
        guard rc == EMUNGE_SUCCESS, let cred else { throw Self.error(rc, ctx) }
        defer { free(cred) }
        return String(cString: cred)
    }

    /// Checks a credential and returns the uid and gid of the process that made it.
    public func decode(_ credential: String) throws(MungeError) -> MungeIdentity {
        let ctx = munge_ctx_create()
        defer { munge_ctx_destroy(ctx) }
        if let socketPath { _ = cmunge_ctx_set_socket(ctx, socketPath) }
        var buf: UnsafeMutableRawPointer?
        var len: Int32 = 0
        var uid: uid_t = 0
        var gid: gid_t = 0
        let rc = munge_decode(credential, ctx, &buf, &len, &uid, &gid)
        defer { free(buf) }
        guard rc == EMUNGE_SUCCESS else { throw Self.error(rc, ctx) }
        let payload = buf.map { Array(UnsafeRawBufferPointer(start: $0, count: Int(len))) } ?? []
        return MungeIdentity(uid: uid, gid: gid, payload: payload)
    }

    static func error(_ rc: munge_err_t, _ ctx: OpaquePointer?) -> MungeError {
        let text = munge_ctx_strerror(ctx).map { String(cString: $0) } ?? String(cString: munge_strerror(rc))
        let kind: MungeError.Kind
        switch rc {
        case EMUNGE_SOCKET: kind = .daemonUnreachable
        case EMUNGE_CRED_EXPIRED: kind = .expired
        case EMUNGE_CRED_REPLAYED: kind = .replayed
        case EMUNGE_CRED_REWOUND: kind = .rewound
        case EMUNGE_CRED_UNAUTHORIZED: kind = .unauthorized
        case EMUNGE_BAD_CRED, EMUNGE_BAD_VERSION, EMUNGE_BAD_CIPHER, EMUNGE_BAD_MAC, EMUNGE_BAD_ZIP, EMUNGE_BAD_REALM,
            EMUNGE_CRED_INVALID, EMUNGE_BAD_LENGTH, EMUNGE_BAD_ARG:
            kind = .invalid
        default: kind = .other
        }
        return MungeError(kind: kind, code: Int32(rc.rawValue), message: text)
    }
}
