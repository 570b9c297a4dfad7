/// Who is making a request, as established by munge or a token the service signed.
public struct Caller: Sendable, Hashable, Codable {
    public var uid: UInt32
    public var gid: UInt32
    public var login: String
    /// Names of the Unix groups the user belongs to, primary group included.
    public var groups: [String]

    public init(uid: UInt32, gid: UInt32, login: String, groups: [String]) {
        self.uid = uid
        self.gid = gid
        self.login = login
        self.groups = groups
    }
}

/// One entry of `visible_to`: who may see a servable besides its owner.
public enum Principal: Sendable, Hashable, CustomStringConvertible {
    case everyone
    case user(String)
    case group(String)

    /// Parses `public`, `user:<login>` or `group:<unix group>`; nil for anything else.
    public init?(parsing text: String) {
        if text == "public" { self = .everyone; return }
        if text.hasPrefix("user:"), text.count > 5 { self = .user(String(text.dropFirst(5))); return }
        if text.hasPrefix("group:"), text.count > 6 { self = .group(String(text.dropFirst(6))); return }
        return nil
    }

    public var description: String {
        switch self {
        case .everyone: return "public"
        case .user(let u): return "user:\(u)"
        case .group(let g): return "group:\(g)"
        }
    }
}

/// The access rule for servables: the owner always sees their own; others by `visible_to`.
public enum AccessPolicy {
    public static func canSee(owner: String, visibleTo: [Principal], caller: Caller) -> Bool {
        if caller.login == owner { return true }
        return visibleTo.contains { principal in
            switch principal {
            case .everyone: return true
            case .user(let u): return u == caller.login
            case .group(let g): return caller.groups.contains(g)
            }
        }
    }
}
