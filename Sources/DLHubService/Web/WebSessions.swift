import DLHubCore
import Foundation

/// Browser sessions for the web catalogue.
///
/// `dlhub open` asks (with the caller's munge credential or token) for a one-time sign-in link;
/// following it turns the code into a session cookie. A code is good once and for
/// `codeLifetimeSeconds`; a session for `sessionLifetimeSeconds`, until its holder signs out, or
/// until `revokeAll(login:)` (`dlhub open --sign-out-everywhere`). A session's groups are looked up again
/// as tokens' are (at most `groupRefreshSeconds` apart), so leaving a group takes effect in it
/// too. Sessions live in memory: restarting the service signs everyone out.
public final class WebSessions: Sendable {
    struct Session {
        var caller: Caller
        var expires: Date
        var checked: Date
    }

    struct State {
        var codes: [String: (caller: Caller, next: String, expires: Date)] = [:]
        var sessions: [String: Session] = [:]
    }

    public let codeLifetimeSeconds: Double
    public let sessionLifetimeSeconds: Double
    let groupRefreshSeconds: Double
    /// Codes and sessions held at most (the oldest go first): a bound on what callers can make.
    let capacity: Int
    private let state = LockedBox(State())
    private let currentCaller: @Sendable (Caller) async -> Caller?

    public init(
        codeLifetimeSeconds: Double = 120, sessionLifetimeSeconds: Double = 8 * 3600, groupRefreshSeconds: Double = 60,
        capacity: Int = 10_000, currentCaller: @escaping @Sendable (Caller) async -> Caller?
    ) {
        self.codeLifetimeSeconds = codeLifetimeSeconds
        self.sessionLifetimeSeconds = sessionLifetimeSeconds
        self.groupRefreshSeconds = groupRefreshSeconds
        self.capacity = max(1, capacity)
        self.currentCaller = currentCaller
    }

    /// 256 random bits, URL-safe.
    static func secret() -> String {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
        return Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// A one-time code for `caller`, who is sent on to `next` (a catalogue path) once signed in.
    public func issueCode(for caller: Caller, next: String, now: Date = Date()) -> (code: String, expires: Date) {
        let code = Self.secret()
        let expires = now.addingTimeInterval(codeLifetimeSeconds)
        let capacity = self.capacity
        state.update { s in
            s.codes = s.codes.filter { $0.value.expires > now }
            if s.codes.count >= capacity, let oldest = s.codes.min(by: { $0.value.expires < $1.value.expires })?.key {
                s.codes.removeValue(forKey: oldest)
            }
            s.codes[code] = (caller, next, expires)
        }
        return (code, expires)
    }

    /// Whom a live code would sign in, without spending it.
    public func peek(code: String, now: Date = Date()) -> String? {
        state.update { s in
            guard let entry = s.codes[code], entry.expires > now else { return nil }
            return entry.caller.login
        }
    }

    /// Spends a code: a new session and where to go, or nil (unknown, used or expired).
    public func redeem(code: String, now: Date = Date()) -> (session: String, caller: Caller, next: String)? {
        let session = Self.secret()
        let lifetime = sessionLifetimeSeconds
        let capacity = self.capacity
        return state.update { s in
            guard let entry = s.codes.removeValue(forKey: code), entry.expires > now else { return nil }
            s.sessions = s.sessions.filter { $0.value.expires > now }
            if s.sessions.count >= capacity, let oldest = s.sessions.min(by: { $0.value.expires < $1.value.expires })?.key {
                s.sessions.removeValue(forKey: oldest)
            }
            s.sessions[session] = Session(caller: entry.caller, expires: now.addingTimeInterval(lifetime), checked: now)
            return (session, entry.caller, entry.next)
        }
    }

    /// The caller a session cookie stands for, with groups as they are now; nil when it is not a
    /// live session (or its account is gone).
    public func caller(session: String, now: Date = Date()) async -> Caller? {
        guard let found = state.update({ $0.sessions[session] }), found.expires > now else {
            state.update { _ = $0.sessions.removeValue(forKey: session) }
            return nil
        }
        if now.timeIntervalSince(found.checked) < groupRefreshSeconds { return found.caller }
        guard let current = await currentCaller(found.caller), current.login == found.caller.login else {
            state.update { _ = $0.sessions.removeValue(forKey: session) }
            return nil
        }
        state.update { s in
            guard s.sessions[session] != nil else { return }
            s.sessions[session]?.caller = current
            s.sessions[session]?.checked = now
        }
        return current
    }

    /// Signs one session out.
    public func end(session: String) {
        state.update { _ = $0.sessions.removeValue(forKey: session) }
    }

    /// Signs out every session (and spends every code) of `login`; returns how many sessions ended.
    @discardableResult
    public func revokeAll(login: String) -> Int {
        state.update { s in
            let before = s.sessions.count
            s.sessions = s.sessions.filter { $0.value.caller.login != login }
            s.codes = s.codes.filter { $0.value.caller.login != login }
            return before - s.sessions.count
        }
    }
}
