import DLHubCluster
import DLHubCore
import Foundation
import Glibc

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Talks HTTP to `dlhubd`: finds it, authenticates, and turns error documents into messages.
struct ServiceClient {
    let baseURL: String
    /// The token from `dlhub login` for this service, read once; nil means munge per request.
    let token: String?

    /// Finds the service: `--url`, `DLHUB_URL`, or the registry's `service.json`.
    init(url: String?, registry: String?) throws {
        let env = ProcessInfo.processInfo.environment
        if let url = url ?? env["DLHUB_URL"], !url.isEmpty {
            baseURL = url.hasSuffix("/") ? String(url.dropLast()) : url
            token = Credentials.cachedToken(for: baseURL)
            return
        }
        let candidates = [registry, env["DLHUB_REGISTRY"]].compactMap { $0 }
        for root in candidates {
            if let data = FileManager.default.contents(atPath: root + "/service.json"),
                let json = try? JSONValue.parse(Array(data)), let u = json["url"]?.stringValue
            {
                baseURL = u
                token = Credentials.cachedToken(for: u)
                return
            }
        }
        if candidates.isEmpty {
            throw CLIError(
                "cannot find the DLHub service: pass --url, set DLHUB_URL, or set DLHUB_REGISTRY to the registry directory (`module load dlhub` sets it)"
            )
        }
        throw CLIError(
            "cannot find the DLHub service: no service.json in \(candidates.joined(separator: " or ")); is dlhubd running? Otherwise pass --url or set DLHUB_URL"
        )
    }

    struct Reply {
        var status: Int
        var json: JSONValue
    }

    /// Sends a request and returns the JSON reply; an error reply becomes a `CLIError`.
    func request(
        _ method: String, _ path: String, body: [UInt8]? = nil, bodyFile: String? = nil, contentType: String = "application/json",
        authenticate: Bool = true, forceMunge: Bool = false, acceptStatuses: Set<Int> = []
    ) async throws -> Reply {
        guard let url = URL(string: baseURL + path) else { throw CLIError("bad service URL \(baseURL + path)") }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.timeoutInterval = 3600
        if let body {
            request.httpBody = Data(body)
            request.setValue(contentType, forHTTPHeaderField: "Content-Type")
        } else if bodyFile != nil {
            request.setValue(contentType, forHTTPHeaderField: "Content-Type")
        }
        if authenticate {
            let header = try token.flatMap { forceMunge ? nil : "Bearer \($0)" } ?? Credentials.mungeHeader()
            request.setValue(header, forHTTPHeaderField: "Authorization")
        }
        let data: Data
        let response: URLResponse
        do {
            if let bodyFile {
                // Streamed from the file: a large servable is never held in memory whole.
                (data, response) = try await URLSession.shared.upload(for: request, fromFile: URL(fileURLWithPath: bodyFile))
            } else {
                (data, response) = try await URLSession.shared.data(for: request)
            }
        } catch {
            throw CLIError(
                "cannot reach the DLHub service at \(baseURL): \(error.localizedDescription). Is dlhubd running? (`dlhub` found this address in \(ProcessInfo.processInfo.environment["DLHUB_URL"] != nil ? "DLHUB_URL" : "service.json or --url"))"
            )
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        let json = (try? JSONValue.parse(Array(data))) ?? .string(String(decoding: data, as: UTF8.self))
        if status >= 400, !acceptStatuses.contains(status) {
            if status == 401, token != nil, !forceMunge {
                Credentials.forgetToken()
            }
            var message = json["error"]?["message"]?.stringValue ?? "HTTP \(status): \(json.encodedString())"
            if let details = json["error"]?["details"]?.arrayValue, !details.isEmpty,
                json["error"]?["code"]?.stringValue != "invalid_metadata"
            {
                message +=
                    "\n"
                    + details.compactMap { d in d["path"]?.stringValue.map { "  - \($0): \(d["message"]?.stringValue ?? "")" } }.joined(
                        separator: "\n")
            }
            throw CLIError(message, status: status)
        }
        return Reply(status: status, json: json)
    }
}

/// Credentials for requests: a cached token from `dlhub login`, else a fresh munge credential.
enum Credentials {
    static func mungeHeader() throws -> String {
        do {
            return "Munge " + (try MungeCodec().encode())
        } catch {
            throw CLIError("cannot make a munge credential: \(error.message). Is munged running on this host? (`munge -n` tests it)")
        }
    }

    /// `~/.dlhub/token.json`, in the home directory of the user running `dlhub`.
    static var tokenFile: String {
        if let dir = ProcessInfo.processInfo.environment["DLHUB_CONFIG_DIR"] { return dir + "/token.json" }
        var home = ProcessInfo.processInfo.environment["HOME"] ?? "/tmp"
        if let pw = getpwuid(getuid()), let dir = pw.pointee.pw_dir { home = String(cString: dir) }
        return home + "/.dlhub/token.json"
    }

    static func cachedToken(for baseURL: String) -> String? {
        guard let data = FileManager.default.contents(atPath: tokenFile), let json = try? JSONValue.parse(Array(data)),
            json["url"]?.stringValue == baseURL, let token = json["token"]?.stringValue, let exp = json["expires_at"]?.intValue,
            exp > Int64(Date().timeIntervalSince1970) + 30
        else { return nil }
        return token
    }

    static func store(token: String, expires: Int64, login: String, url: String) throws {
        let path = tokenFile
        let dir = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let json: JSONValue = ["url": .string(url), "token": .string(token), "expires_at": .int(expires), "login": .string(login)]
        let temp = path + ".tmp"
        guard
            FileManager.default.createFile(atPath: temp, contents: Data(json.encoded(pretty: true)), attributes: [.posixPermissions: 0o600])
        else {
            throw CLIError("cannot write \(temp)")
        }
        chmod(temp, 0o600)
        guard rename(temp, path) == 0 else { throw CLIError("cannot write \(path)") }
    }

    static func forgetToken() {
        unlink(tokenFile)
    }
}

/// An error for the user: the message says what went wrong and what to do.
struct CLIError: Error, CustomStringConvertible {
    var message: String
    var status: Int?
    init(_ message: String, status: Int? = nil) {
        self.message = message
        self.status = status
    }
    var description: String { message }
}
