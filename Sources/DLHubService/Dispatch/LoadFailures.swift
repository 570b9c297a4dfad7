import DLHubCore
import Foundation

/// Servables (a version with its parameters and environment: a queue key) that failed to load,
/// and when they may be tried again.
///
/// A failed load is remembered: requests that come before the retry time fail at once with the
/// recorded error instead of waiting for a pilot that will not load it (they used to wait for
/// ever). Each further failure doubles the wait, up to `maxBackoff`; a successful load anywhere,
/// a rebuilt environment or a lost pilot's history do not count against it. A new version is
/// another key, so it is tried at once.
struct LoadFailures {
    struct Failure: Sendable, Equatable {
        var digest: String
        var error: String
        var jobID: UInt32
        var node: String
        var at: Date
        var attempts: Int
        var retryAt: Date
        /// Sessions it failed on: a retry prefers another pilot.
        var tried: Set<Int>
    }

    static let firstBackoff = 30.0
    static let maxBackoff = 600.0

    private(set) var byKey: [String: Failure] = [:]
    /// Keys whose queued items may be waiting for a load that is not coming (items put back
    /// from a lost pilot, or restored after a restart), for the next `takeBlocked`.
    private var blocked: Set<String> = []
    private var passScheduled = false

    static func backoff(attempts: Int) -> Double {
        min(maxBackoff, firstBackoff * pow(2, Double(max(0, attempts - 1))))
    }

    @discardableResult
    mutating func record(_ key: String, digest: String, error: String, session: Int, jobID: UInt32, node: String, now: Date) -> Failure {
        var failure =
            byKey[key]
            ?? Failure(digest: digest, error: error, jobID: jobID, node: node, at: now, attempts: 0, retryAt: now, tried: [])
        failure.error = error
        failure.jobID = jobID
        failure.node = node
        failure.at = now
        failure.attempts += 1
        failure.retryAt = now.addingTimeInterval(Self.backoff(attempts: failure.attempts))
        failure.tried.insert(session)
        byKey[key] = failure
        return failure
    }

    /// The failure that stops `key` from being tried now, if any.
    func blocking(_ key: String, now: Date) -> Failure? {
        guard let f = byKey[key], now < f.retryAt else { return nil }
        return f
    }

    /// Whether a pilot may be asked to load `key` now; `tried` pilots come last on a retry.
    func mayLoad(_ key: String, now: Date) -> Bool { blocking(key, now: now) == nil }

    func triedOn(_ key: String, session: Int) -> Bool { byKey[key]?.tried.contains(session) ?? false }

    mutating func loaded(_ key: String) { byKey.removeValue(forKey: key) }

    mutating func forget(_ keys: [String]) { for k in keys { byKey.removeValue(forKey: k) } }

    mutating func sessionLeft(_ session: Int) {
        for k in byKey.keys { byKey[k]?.tried.remove(session) }
    }

    /// Notes that `key` cannot be loaded now while items may wait for it; true when the caller
    /// is to schedule a pass that fails them (`takeBlocked`), false when one is already coming.
    mutating func markBlocked(_ key: String) -> Bool {
        blocked.insert(key)
        defer { passScheduled = true }
        return !passScheduled
    }

    /// The keys noted since the last pass, for the pass under way.
    mutating func takeBlocked() -> Set<String> {
        passScheduled = false
        defer { blocked = [] }
        return blocked
    }

    /// The most recent failure of any key of a servable version (for `dlhub describe`).
    func latest(digest: String) -> Failure? {
        byKey.values.filter { $0.digest == digest }.max { $0.at < $1.at }
    }

    /// What a request refused because of `failure` is told.
    static func message(_ failure: Failure, now: Date) -> String {
        let wait = max(1, Int(failure.retryAt.timeIntervalSince(now).rounded(.up)))
        let at = ISO8601DateFormatter().string(from: failure.retryAt)
        return
            "the servable could not be loaded (pilot job \(failure.jobID) on \(failure.node), \(failure.attempts == 1 ? "first attempt" : "\(failure.attempts) attempts")): \(failure.error). It is tried again from \(at) (in \(wait) s); publish a fixed version to try at once, and see `dlhub logs` for what the worker wrote"
    }

    static func json(_ failure: Failure, now: Date) -> JSONValue {
        [
            "error": .string(failure.error), "job_id": .int(Int64(failure.jobID)), "node": .string(failure.node),
            "at": .string(ISO8601DateFormatter().string(from: failure.at)), "attempts": .int(Int64(failure.attempts)),
            "retry_at": .string(ISO8601DateFormatter().string(from: failure.retryAt)),
            "retry_in_s": .int(Int64(max(0, failure.retryAt.timeIntervalSince(now).rounded(.up)))),
        ]
    }
}
