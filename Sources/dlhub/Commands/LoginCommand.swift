import ArgumentParser
import DLHubCore
import Foundation

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
