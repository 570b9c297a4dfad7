/// An error a user can act on: a stable code, a message that says what to do, and the cause.
///
/// The service maps `code` to an HTTP status and sends `{"error": {"code", "message"}}`; the
/// CLI prints `message`. Messages name the offending field, file or value.
public struct DLHubError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        case badRequest = "bad_request"
        case invalidMetadata = "invalid_metadata"
        case invalidArchive = "invalid_archive"
        case invalidInput = "invalid_input"
        case invalidName = "invalid_name"
        case unauthenticated = "unauthenticated"
        case forbidden = "forbidden"
        case notFound = "not_found"
        case withdrawn = "withdrawn"
        case conflict = "conflict"
        case tooLarge = "too_large"
        /// Over a per-user limit: the client should retry later (429 with Retry-After).
        case quotaExceeded = "quota_exceeded"
        case unavailable = "unavailable"
        case slurm = "slurm_error"
        case munge = "munge_error"
        case timeout = "timeout"
        case workerFailed = "worker_failed"
        case `internal` = "internal"
    }

    public var code: Code
    public var message: String
    /// Per-field problems, for validation errors.
    public var details: [ValidationIssue]
    public var cause: (any Error)?

    public init(_ code: Code, _ message: String, details: [ValidationIssue] = [], cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.details = details
        self.cause = cause
    }

    public var description: String {
        var s = message
        for d in details { s += "\n  - \(d)" }
        if let cause { s += " (cause: \(cause))" }
        return s
    }
}

/// One problem found while validating a document: where it is and what is wrong.
public struct ValidationIssue: Sendable, Hashable, CustomStringConvertible {
    /// A dotted path into the document, e.g. `servable.methods.run.input.shape`.
    public var path: String
    public var message: String

    public init(_ path: String, _ message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "\(path): \(message)" }
}
