import DLHubCore
import Hummingbird
import Logging
import NIOCore

/// Turns every error into the API's JSON error document with a fitting status.
///
/// `{"error": {"code": "...", "message": "...", "details": [{"path", "message"}]}}`: the message
/// tells the user what to do. Unexpected errors are logged and answered with a 500 that does not
/// leak internals.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as DLHubError {
            if error.code == .internal {
                context.logger.error("request failed", metadata: ["error": "\(error)", "http.path": "\(request.uri.path)"])
            }
            return Self.response(for: error)
        } catch is NIOTooManyBytesError {
            return Self.response(for: DLHubError(.tooLarge, Self.tooLargeMessage))
        } catch let error as HTTPError {
            let code: DLHubError.Code
            var message = error.body ?? "\(error.status.reasonPhrase)"
            switch error.status {
            case .notFound:
                code = .notFound
                message = "no such route: \(request.method) \(request.uri.path); see the API table in the README"
            case .contentTooLarge:
                code = .tooLarge
                message = Self.tooLargeMessage
            case .methodNotAllowed: code = .badRequest
            default: code = error.status.code >= 500 ? .internal : .badRequest
            }
            return Self.response(for: DLHubError(code, message), status: error.status)
        } catch {
            context.logger.error("unexpected error", metadata: ["error": "\(error)", "http.path": "\(request.uri.path)"])
            return Self.response(
                for: DLHubError(.internal, "the service failed to handle this request; the site's dlhubd log has the details"))
        }
    }

    static let tooLargeMessage =
        "the request body is larger than this service accepts; publish a smaller servable or ask the site to raise max_upload_bytes"

    static func status(for code: DLHubError.Code) -> HTTPResponse.Status {
        switch code {
        case .badRequest, .invalidMetadata, .invalidArchive, .invalidInput, .invalidName: return .badRequest
        case .unauthenticated: return .unauthorized
        case .forbidden: return .forbidden
        case .notFound: return .notFound
        case .withdrawn: return .gone
        case .conflict: return .conflict
        case .tooLarge: return .contentTooLarge
        case .quotaExceeded: return .tooManyRequests
        case .unavailable, .munge: return .serviceUnavailable
        case .slurm: return .badGateway
        case .timeout: return .gatewayTimeout
        case .workerFailed, .internal: return .internalServerError
        }
    }

    static func response(for error: DLHubError, status: HTTPResponse.Status? = nil) -> Response {
        var body: [String: JSONValue] = ["code": .string(error.code.rawValue), "message": .string(error.message)]
        if !error.details.isEmpty {
            body["details"] = .array(error.details.map { ["path": .string($0.path), "message": .string($0.message)] })
        }
        var response = Response.json(["error": .object(body)], status: status ?? Self.status(for: error.code))
        if error.code == .unauthenticated { response.headers[.wwwAuthenticate] = "Munge, Bearer" }
        if error.code == .quotaExceeded { response.headers[.retryAfter] = "10" }
        return response
    }
}

extension Response {
    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: value.encoded(pretty: true))))
    }
}
