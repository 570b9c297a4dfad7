/// How a user names a servable: `owner/name` (latest), `owner/name@N`, or `sha256:<hex>`.
public enum ServableReference: Sendable, Hashable, CustomStringConvertible {
    case latest(owner: String, name: String)
    case version(owner: String, name: String, version: Int)
    case digest(String)

    /// Parses a reference, with a message that shows the accepted forms when it is malformed.
    public init(parsing text: String) throws(DLHubError) {
        if text.hasPrefix("sha256:") {
            let hex = text.dropFirst(7)
            guard hex.count == 64, hex.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else {
                throw DLHubError(.invalidName, "'\(text.prefix(120))' is not a digest: expected sha256: and 64 lowercase hex digits")
            }
            self = .digest(text)
            return
        }
        let usage = "name servables as owner/name, owner/name@N or sha256:<digest>"
        var rest = Substring(text)
        var version: Int?
        if let at = rest.lastIndex(of: "@") {
            guard let v = Int(rest[rest.index(after: at)...]), v >= 1 else {
                throw DLHubError(.invalidName, "'\(text.prefix(120))': the version after '@' must be a whole number from 1; \(usage)")
            }
            version = v
            rest = rest[..<at]
        }
        let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw DLHubError(.invalidName, "'\(text.prefix(120))' is not a servable reference; \(usage)") }
        let owner = String(parts[0])
        let name = String(parts[1])
        if let p = ServableName.problem(with: owner, kind: "owner") { throw DLHubError(.invalidName, p) }
        if let p = ServableName.problem(with: name) { throw DLHubError(.invalidName, p) }
        if let version { self = .version(owner: owner, name: name, version: version) } else { self = .latest(owner: owner, name: name) }
    }

    public var description: String {
        switch self {
        case .latest(let o, let n): return "\(o)/\(n)"
        case .version(let o, let n, let v): return "\(o)/\(n)@\(v)"
        case .digest(let d): return d
        }
    }
}
