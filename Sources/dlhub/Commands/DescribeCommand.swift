import ArgumentParser
import DLHubCore
import Foundation

/// `dlhub describe ID`: one servable's metadata and identifiers.
struct DescribeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "describe", abstract: "Show a servable: owner/name, owner/name@N or sha256:<digest>.")

    @OptionGroup var options: ClientOptions
    @Argument(help: "owner/name, owner/name@N or sha256:<digest>.") var id: String

    func run() async throws {
        try await CLIError.guarding {
            let reference = try ServableReference(parsing: id)
            let reply = try await options.client().request("GET", "/v1/servables/\(reference)")
            if options.json { return Output.json(reply.json) }
            let j = reply.json
            let m = j["metadata"] ?? .null
            print("\(j["id"]?.stringValue ?? "")@\(j["version"]?.intValue ?? 0)  \(j["title"]?.stringValue ?? "")")
            if let w = j["withdrawn"], !w.isNull {
                print(
                    "WITHDRAWN  on \(w["at"]?.stringValue ?? "") by \(w["by"]?.stringValue ?? "")\((w["reason"]?.stringValue).map { $0.isEmpty ? "" : ": \($0)" } ?? "")"
                )
            }
            let authors = (m["datacite"]?["creators"]?.arrayValue ?? []).compactMap {
                $0["creatorName"]?.stringValue ?? $0["familyName"]?.stringValue
            }
            let rows: [(String, String)] = [
                ("digest", j["digest"]?.stringValue ?? ""),
                ("type", j["type"]?.stringValue ?? ""),
                ("input", j["input"]?.stringValue ?? ""),
                ("output", j["output"]?.stringValue ?? ""),
                ("authors", authors.joined(separator: "; ")),
                ("domains", (m["dlhub"]?["domains"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", ")),
                ("visible to", (j["visible_to"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", ")),
                ("published", m["dlhub"]?["publication_date"]?.stringValue ?? ""),
                ("versions", (j["versions"]?.arrayValue ?? []).compactMap { $0.intValue.map(String.init) }.joined(separator: ", ")),
            ]
            for (k, v) in rows where !v.isEmpty { print("  \(k.padding(toLength: 11, withPad: " ", startingAt: 0)) \(v)") }
            let description = (m["datacite"]?["descriptions"]?.arrayValue ?? []).compactMap { $0["description"]?.stringValue }.joined(
                separator: "\n")
            if !description.isEmpty { print("\n" + description) }
        }
    }
}

/// `dlhub withdraw owner/name@N`.
struct WithdrawCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "withdraw", abstract: "Withdraw one version; its identifier keeps resolving to a tombstone.")

    @OptionGroup var options: ClientOptions
    @Argument(help: "owner/name@N") var id: String
    @Option(help: "Why, for the tombstone.") var reason: String = ""

    func run() async throws {
        try await CLIError.guarding {
            guard case .version = try ServableReference(parsing: id) else {
                throw CLIError("withdraw one version at a time: give owner/name@N")
            }
            let reason = SearchCommand.escape(self.reason)
            let reply = try await options.client().request("DELETE", "/v1/servables/\(id)?reason=\(reason)")
            if options.json { return Output.json(reply.json) }
            print("withdrew \(id) (\(reply.json["digest"]?.stringValue ?? "")); its number will not be reused")
        }
    }
}

/// `dlhub login`: trade a munge credential for a token, cached with mode 0600.
struct LoginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login", abstract: "Get a service token (saved in ~/.dlhub/token.json, mode 0600).")
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await CLIError.guarding {
            let client = try options.client()
            let url = client.baseURL
            let reply = try await client.requestWithMunge("POST", "/v1/auth/token")
            guard let token = reply.json["token"]?.stringValue, let exp = reply.json["expires_at"]?.intValue else {
                throw CLIError("the service returned no token")
            }
            let login = reply.json["login"]?.stringValue ?? ""
            try Credentials.store(token: token, expires: exp, login: login, url: url)
            if options.json {
                return Output.json(["login": .string(login), "expires_at": .int(exp), "file": .string(Credentials.tokenFile)])
            }
            print("logged in as \(login) at \(url); token saved in \(Credentials.tokenFile)")
        }
    }
}

/// `dlhub whoami`.
struct WhoAmICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "whoami", abstract: "Show who the service thinks you are.")
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await CLIError.guarding {
            let client = try options.client()
            let reply = try await client.request("GET", "/v1/whoami")
            if options.json { return Output.json(reply.json) }
            let groups = (reply.json["groups"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", ")
            print("\(reply.json["login"]?.stringValue ?? "?") (uid \(reply.json["uid"]?.intValue ?? -1)); groups: \(groups)")
            print("service: \(client.baseURL); credentials: \(client.token != nil ? "token from `dlhub login`" : "munge")")
        }
    }
}

extension ServiceClient {
    /// A request authenticated with munge even when a token is cached (for `login`).
    func requestWithMunge(_ method: String, _ path: String) async throws -> Reply {
        try await request(method, path, authenticate: true, forceMunge: true)
    }
}
