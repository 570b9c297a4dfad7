import DLHubCore
import Hummingbird
import Metrics

/// Authenticates every API request (`/v1/...`) except the monitoring routes (`/healthz`,
/// `/metrics`) and the token exchange. The web catalogue's pages (every path outside `/v1/`) are
/// open: they show what an anonymous visitor may see, or what a session cookie's user may
/// (`WebRoutes`), and change nothing.
struct AuthenticationMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let authenticator: Authenticator
    let failures = Counter(label: "dlhub_auth_failures_total")

    static let open: Set<String> = ["/healthz", "/metrics", "/v1/auth/token"]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        if Self.open.contains(path) || !path.hasPrefix("/v1/") { return try await next(request, context) }
        var context = context
        do {
            context.caller = try await authenticator.authenticate(authorization: request.headers[.authorization])
            context.accessLog?.user = context.caller?.login
        } catch {
            failures.increment()
            throw error
        }
        return try await next(request, context)
    }
}
