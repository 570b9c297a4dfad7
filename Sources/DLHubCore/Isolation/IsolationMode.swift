/// How a pilot isolates the workers it starts (the site setting `isolation`).
public enum IsolationMode: String, Sendable, Hashable, CaseIterable {
    /// Every worker in its own bubblewrap sandbox (user, mount, PID, network and IPC namespaces).
    case bubblewrap
    /// Container servables in Apptainer/Singularity; the rest in bubblewrap.
    case apptainer
    /// No sandbox: workers run as the service account with its rights. Only when an admin says so.
    case none

    /// Parses the setting, with the fix in the error.
    public init(setting: String) throws(DLHubError) {
        guard let mode = IsolationMode(rawValue: setting) else {
            throw DLHubError(
                .badRequest, "isolation must be one of \(Self.allCases.map(\.rawValue).joined(separator: ", ")), not '\(setting)'")
        }
        self = mode
    }
}

/// What a pilot found when it checked its sandbox at start, reported in its hello.
public enum IsolationStatus: Sendable, Equatable, CustomStringConvertible {
    case available(IsolationMode)
    /// The site requires a sandbox that does not work on this node, and why.
    case unavailable(IsolationMode, reason: String)

    public var description: String {
        switch self {
        case .available(let mode): return mode.rawValue
        case .unavailable(let mode, let reason): return "\(mode.rawValue) unavailable: \(reason)"
        }
    }

    /// Parses what `description` wrote (from a hello).
    public init(parsing text: String) {
        for mode in IsolationMode.allCases {
            if text == mode.rawValue {
                self = .available(mode)
                return
            }
            let prefix = mode.rawValue + " unavailable: "
            if text.hasPrefix(prefix) {
                self = .unavailable(mode, reason: String(text.dropFirst(prefix.count)))
                return
            }
        }
        self = .unavailable(.bubblewrap, reason: "the pilot reported '\(text)'")
    }
}
