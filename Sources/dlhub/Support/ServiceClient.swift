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
    /// The service's id, which munge credentials name so that no other service can use them.
    let serviceID: String?
    /// The registry's owner (the service account) when the service was found in its
    /// `service.json`: on this host, only a port that account holds gets a credential.
    let registryOwner: UInt32?

    /// Finds the service: `--url`, `DLHUB_URL`, or the registry's `service.json`.
    init(url: String?, registry: String?) throws {
        let env = ProcessInfo.processInfo.environment
        if let url = url ?? env["DLHUB_URL"], !url.isEmpty {
            baseURL = url.hasSuffix("/") ? String(url.dropLast()) : url
            token = Credentials.cachedToken(for: baseURL)
            serviceID = nil
            registryOwner = nil
            return
        }
        let candidates = [registry, env["DLHUB_REGISTRY"]].compactMap { $0 }
        for root in candidates where FileManager.default.fileExists(atPath: root + "/service.json") {
            let owner = try Self.checkTrust(root)
            if let data = FileManager.default.contents(atPath: root + "/service.json"),
                let json = try? JSONValue.parse(Array(data)), let u = json["url"]?.stringValue
            {
                baseURL = u
                token = Credentials.cachedToken(for: u)
                serviceID = json["service_id"]?.stringValue
                registryOwner = owner
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

    /// Refuses a `service.json` that someone other than the registry's owner (the service
    /// account) wrote or could write: it would send every request, and its credentials, elsewhere.
    @discardableResult
    static func checkTrust(_ root: String) throws -> UInt32? {
        let path = root + "/service.json"
        let fm = FileManager.default
        guard let file = try? fm.attributesOfItem(atPath: path), let directory = try? fm.attributesOfItem(atPath: root) else {
            throw CLIError("cannot read \(path)")
        }
        let fileOwner = (file[.ownerAccountID] as? NSNumber)?.uint32Value
        let rootOwner = (directory[.ownerAccountID] as? NSNumber)?.uint32Value
        let mode = (file[.posixPermissions] as? NSNumber)?.uint16Value ?? 0o777
        func name(_ uid: UInt32?) -> String {
            uid.flatMap { getpwuid($0) }.map { String(cString: $0.pointee.pw_name) } ?? "uid \(uid.map(String.init) ?? "?")"
        }
        guard file[.type] as? FileAttributeType == .typeRegular else {
            throw CLIError("not trusting \(path): it is not a regular file (a link?); ask the site admin to check the registry")
        }
        guard fileOwner == rootOwner else {
            throw CLIError(
                "not trusting \(path): it belongs to \(name(fileOwner)), not to \(name(rootOwner)), who owns the registry; someone may be redirecting DLHub requests. Tell the site admin"
            )
        }
        guard mode & 0o022 == 0 else {
            throw CLIError(
                "not trusting \(path): other users can write it (mode \(String(mode, radix: 8))); someone could redirect DLHub requests. Tell the site admin (chmod go-w \(path))"
            )
        }
        return rootOwner
    }

    /// Refuses to send a credential to a port on this host that the registry's owner does not
    /// hold: while `dlhubd` is down, any local user can listen on its port and collect what
    /// clients send there. (A remote service cannot be checked this way; its credentials still
    /// name the service, so that no other service can use them.)
    func checkPortOwner() throws {
        guard let owner = registryOwner, let url = URL(string: baseURL), let host = url.host, ListeningSockets.isLoopback(host)
        else { return }
        let port = url.port ?? (url.scheme == "https" ? 443 : 80)
        guard let listeners = ListeningSockets.owners(port: port), !listeners.isEmpty, !listeners.contains(owner) else { return }
        func name(_ uid: UInt32) -> String { getpwuid(uid).map { String(cString: $0.pointee.pw_name) } ?? "uid \(uid)" }
        throw CLIError(
            "not sending credentials to \(baseURL): the program listening there runs as \(listeners.sorted().map(name).joined(separator: ", ")), not as \(name(owner)), who owns the registry (dlhubd may be down and someone else took its port). Tell the site admin"
        )
    }

    struct Reply {
        var status: Int
        var json: JSONValue
    }

    /// The payload for munge credentials: this service's id, from service.json or `/healthz`.
    func audience() async -> String? {
        if let serviceID { return "dlhub-service:" + serviceID }
        guard let url = URL(string: baseURL + "/healthz"), let (data, _) = try? await URLSession.shared.data(from: url),
            let id = (try? JSONValue.parse(Array(data)))?["service_id"]?.stringValue
        else { return nil }
        return "dlhub-service:" + id
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
            try checkPortOwner()
            let header: String
            if let token, !forceMunge {
                header = "Bearer \(token)"
            } else {
                header = try Credentials.mungeHeader(audience: await audience())
            }
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
    /// A fresh credential naming the service it is for (`audience`), so no other can replay it.
    static func mungeHeader(audience: String?) throws -> String {
        do {
            return "Munge " + (try MungeCodec().encode(payload: audience.map { Array($0.utf8) } ?? []))
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
