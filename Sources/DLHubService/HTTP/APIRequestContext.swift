import DLHubCore
import Hummingbird

/// The per-request context: Hummingbird's core storage plus the authenticated caller.
public struct APIRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Set by `AuthenticationMiddleware` for every route that needs credentials.
    public var caller: Caller?
    /// Set by `AccessLogMiddleware` (when the access log is on): who the request turned out to be from.
    var accessLog: AccessLogMiddleware.Entry?

    public init(source: Source) {
        self.coreContext = .init(source: source)
        self.caller = nil
    }

    /// The caller, for handlers behind the authentication middleware.
    public func requireCaller() throws(DLHubError) -> Caller {
        guard let caller else { throw DLHubError(.unauthenticated, "this request needs credentials: \(Authenticator.howTo)") }
        return caller
    }
}
