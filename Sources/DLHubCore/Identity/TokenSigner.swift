@preconcurrency import Crypto

/// Signs and checks the short-lived bearer tokens that `POST /v1/auth/token` hands out.
///
/// A token is `base64url(claims).base64url(HMAC-SHA256(key, claims))`; the claims are the
/// caller and an expiry. The key lives in the service's state directory, so restarting the
/// service keeps tokens valid and rotating the key revokes them all.
public struct TokenSigner: Sendable {
    let key: SymmetricKey

    public init(key: [UInt8]) {
        self.key = SymmetricKey(data: key)
    }

    public func sign(_ caller: Caller, expires: Int64) -> String {
        let claims: JSONValue = [
            "uid": .int(Int64(caller.uid)), "gid": .int(Int64(caller.gid)), "login": .string(caller.login),
            "groups": .array(caller.groups.map { .string($0) }), "exp": .int(expires),
        ]
        let body = claims.encoded()
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: key)
        return Base64URL.encode(body) + "." + Base64URL.encode(Array(mac))
    }

    /// The caller a token names, or an error saying why it is refused.
    public func verify(_ token: String, now: Int64) throws(DLHubError) -> (caller: Caller, expires: Int64) {
        let parts = token.split(separator: ".")
        guard parts.count == 2, let body = Base64URL.decode(String(parts[0])), let mac = Base64URL.decode(String(parts[1])) else {
            throw DLHubError(.unauthenticated, "the bearer token is malformed; run `dlhub login` for a new one")
        }
        guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: body, using: key) else {
            throw DLHubError(.unauthenticated, "the bearer token was not signed by this service; run `dlhub login` for a new one")
        }
        guard let claims = try? JSONValue.parse(body), let uid = claims["uid"]?.intValue, let gid = claims["gid"]?.intValue,
            let login = claims["login"]?.stringValue, let exp = claims["exp"]?.intValue
        else {
            throw DLHubError(.unauthenticated, "the bearer token is malformed; run `dlhub login` for a new one")
        }
        guard exp > now else {
            throw DLHubError(.unauthenticated, "the bearer token has expired; run `dlhub login` for a new one")
        }
        let groups = claims["groups"]?.arrayValue?.compactMap(\.stringValue) ?? []
        return (Caller(uid: UInt32(uid), gid: UInt32(gid), login: login, groups: groups), exp)
    }
}

/// base64url without padding (RFC 4648 section 5).
public enum Base64URL {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        var i = 0
        while i + 2 < bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], alphabet[Int(n & 63)]]
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let n = UInt32(bytes[i]) << 16
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)]]
        } else if rest == 2 {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)]]
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func decode(_ text: String) -> [UInt8]? {
        var values: [UInt8] = []
        for c in text.utf8 {
            guard let v = alphabet.firstIndex(of: c) else { return nil }
            values.append(UInt8(v))
        }
        if values.count % 4 == 1 { return nil }
        var out: [UInt8] = []
        var i = 0
        while i < values.count {
            let chunk = values[i..<min(i + 4, values.count)]
            var n: UInt32 = 0
            for (k, v) in chunk.enumerated() { n |= UInt32(v) << (18 - 6 * k) }
            out.append(UInt8(n >> 16 & 0xFF))
            if chunk.count > 2 { out.append(UInt8(n >> 8 & 0xFF)) }
            if chunk.count > 3 { out.append(UInt8(n & 0xFF)) }
            i += 4
        }
        return out
    }
}
