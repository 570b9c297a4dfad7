import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// `--log-format json` (here through DLHUB_LOG_FORMAT) and `access_log: true`: every line of the
/// service's log is a JSON object, and every request gets one, with its status and caller.
@Suite struct ServiceLogTests {
    init() throws { try TestUsers.require() }

    @Test func jsonLogLinesAndAnAccessLogLinePerRequest() async throws {
        let service = try LiveService(config: ["access_log": true], environment: ["DLHUB_LOG_FORMAT": "json"])
        let api = APIClient(url: service.url)
        try await api.login(as: TestUsers.alice)
        #expect(try await api.send("GET", "/v1/whoami").status == 200)
        #expect(try await api.send("GET", "/v1/whoami", authorization: "Bearer forged").status == 401)
        #expect(try await api.send("GET", "/v1/servables/alice/nothing-here").status == 404)
        service.stop()
        let lines = service.log.split(separator: "\n").map(String.init)
        #expect(lines.count > 3)
        let documents = lines.compactMap { try? JSONValue.parse($0) }
        #expect(documents.count == lines.count, "every line is JSON: \(lines.filter { (try? JSONValue.parse($0)) == nil })")
        #expect(documents.allSatisfy { $0["ts"] != nil && $0["level"] != nil && $0["message"] != nil })
        let access = documents.filter { $0["label"] == "dlhubd.access" }
        func entry(_ path: String, _ status: String) -> JSONValue? {
            access.first { $0["http.path"]?.stringValue == path && $0["http.status"]?.stringValue == status }
        }
        #expect(entry("/v1/whoami", "200")?["user"] == "alice", "\(access)")
        #expect(entry("/v1/whoami", "401")?["user"] == "-")
        #expect(entry("/v1/servables/alice/nothing-here", "404")?["http.method"] == "GET")
        #expect(entry("/v1/auth/token", "201") != nil)
    }

    /// A hostile path in the access log (text format, what an admin greps): percent-encoded line
    /// breaks must not start a forged line of their own, and the user field is the caller
    /// authentication found, whatever the request says.
    @Test func aHostilePathCannotForgeAccessLogLines() async throws {
        let service = try LiveService(config: ["access_log": true])
        let api = APIClient(url: service.url)
        try await api.login(as: TestUsers.bob)
        let hostile = "/v1/servables/x%0A2026-01-01T00:00:00+0000%20info%20dlhubd.access:%20user=root%0D%0Aforged"
        let reply = try await api.send("GET", hostile + "?user=root")
        #expect(reply.status == 404 || reply.status == 400, "\(reply.status)")
        service.stop()
        let lines = service.log.split(separator: "\n", omittingEmptySubsequences: false).map(String.init).filter { !$0.isEmpty }
        #expect(!lines.contains { $0.hasPrefix("forged") || $0.hasPrefix("2026-01-01T00:00:00") }, "\(lines.suffix(5))")
        let logged = lines.filter { $0.contains("http.path=") && $0.contains("/v1/servables/x") }
        #expect(logged.count == 1, "\(logged)")
        // The path stays percent-encoded inside its field; the user field is the caller's.
        #expect(logged.first?.contains("x%0A2026-01-01T00:00:00") == true, "\(logged)")
        #expect(logged.first?.hasSuffix(" user=bob [DLHubService] request") == true, "\(logged)")
    }
}
