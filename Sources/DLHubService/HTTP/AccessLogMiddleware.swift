import Foundation
import Hummingbird
import Logging

/// One log line per HTTP request (`access_log: true`): method, path, status, duration, caller.
/// Off by default: at thousands of requests a second it is a cost, and the metrics say the rest.
struct AccessLogMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let logger: Logger

    /// Filled in further down the chain (the authentication middleware names the caller).
    final class Entry: @unchecked Sendable {
        var user: String?
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = DispatchTime.now().uptimeNanoseconds
        let entry = Entry()
        var context = context
        context.accessLog = entry
        // Outermost: errors were already turned into responses by the error middleware.
        let response = try await next(request, context)
        let ms = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6
        logger.info(
            "request",
            metadata: [
                "http.method": "\(request.method.rawValue)", "http.path": "\(request.uri.path)", "http.status": "\(response.status.code)",
                "duration_ms": "\(String(format: "%.2f", ms))", "user": "\(entry.user ?? "-")",
            ])
        return response
    }
}
