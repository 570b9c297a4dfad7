@preconcurrency import Crypto

/// Mutual proof between a pilot and the service that submitted it (DESIGN contract 10).
///
/// At submission the service gives each pilot job a random secret through the job's environment,
/// which workers never see (they start with a cleared environment, in their own PID namespace).
/// On connecting, each side proves it holds the secret with an HMAC over both sides' fresh
/// nonces, so neither proof can be replayed and neither side learns anything from the other's:
///
///     pilot   -> hello        {credential (munge), job_id, node, nonce_p, ...}
///     service -> welcome      {session, nonce_s, proof_s = HMAC(secret, "dlhub-service", job, node, nonce_p, nonce_s)}
///     pilot   -> authenticate {proof_p = HMAC(secret, "dlhub-pilot", job, node, nonce_s, nonce_p)}
///
/// A process with the service's munge credential but not the job's secret (a worker that
/// escaped, another job of the service account) fails at the last step; a listener that is not
/// the service fails at the second, and the pilot takes no work from it.
public enum PilotProof {
    /// The environment variable that carries the secret into the pilot job.
    public static let environmentVariable = "DLHUB_PILOT_SECRET"

    /// A fresh secret or nonce: 32 random bytes, hex.
    public static func random() -> String {
        var rng = SystemRandomNumberGenerator()
        return hex((0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) })
    }

    public static func service(secret: String, jobID: UInt32, node: String, pilotNonce: String, serviceNonce: String) -> String {
        mac(secret, ["dlhub-service", String(jobID), node, pilotNonce, serviceNonce])
    }

    public static func pilot(secret: String, jobID: UInt32, node: String, pilotNonce: String, serviceNonce: String) -> String {
        mac(secret, ["dlhub-pilot", String(jobID), node, serviceNonce, pilotNonce])
    }

    /// Compares two proofs in constant time.
    public static func matches(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count, !x.isEmpty else { return false }
        var difference: UInt8 = 0
        for (p, q) in zip(x, y) { difference |= p ^ q }
        return difference == 0
    }

    /// Whether a nonce or secret has the shape `random()` makes.
    public static func isWellFormed(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    static func mac(_ secret: String, _ parts: [String]) -> String {
        var message: [UInt8] = []
        for part in parts {
            message += Array(part.utf8)
            message.append(0)
        }
        return hex(Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: Array(secret.utf8)))))
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out += [digits[Int(b >> 4)], digits[Int(b & 15)]] }
        return String(decoding: out, as: UTF8.self)
    }
}
