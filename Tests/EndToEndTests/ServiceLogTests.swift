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
}
