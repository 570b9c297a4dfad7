import Foundation

extension ServiceClient {
    /// A request authenticated with munge even when a token is cached (for `login`).
    func requestWithMunge(_ method: String, _ path: String) async throws -> Reply {
        try await request(method, path, authenticate: true, forceMunge: true)
    }
}
