import DLHubCore
import Hummingbird
import Metrics

/// Authenticates every request except the monitoring routes (`/healthz`, `/metrics`).
struct AuthenticationMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let authenticator: Authenticator
    let failures = Counter(label: "dlhub_auth_failures_total")

    static let open: Set<String> = ["/healthz", "/metrics", "/v1/auth/token"]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if Self.open.contains(request.uri.path) { return try await next(request, context) }
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
