import ArgumentParser
import DLHubCore
import Foundation

/// `dlhub open [owner/name]`: a one-time link that signs this user in to the web catalogue.
struct OpenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "open",
        abstract: "Print a one-time link that signs you in to the web catalogue (and open it where a browser is at hand).",
        discussion: """
            The link works once, for two minutes; the browser session it starts lasts eight hours (the site's \
            web_session_lifetime_seconds) or until you sign out. With it, the catalogue shows what you may see: \
            your private servables and your groups'. Without it, it shows public servables only.
            Example: dlhub open alice/iris
            """)
    @OptionGroup var options: ClientOptions
    @Argument(help: "owner/name or owner/name@N: the page to land on (default: the search page).") var id: String?
    @Flag(help: "Only print the link; do not start a browser.") var print = false
    @Flag(help: "Sign out every browser session of yours instead.") var signOutEverywhere = false

    func run() async throws {
        try await CLIError.guarding {
            let client = try options.client()
            if signOutEverywhere {
                let reply = try await client.request("DELETE", "/v1/web/sessions")
                if options.json { return Output.json(reply.json) }
                Swift.print("signed out \(reply.json["sessions_ended"]?.intValue ?? 0) browser session(s)")
                return
            }
            var next = "/"
            if let id {
                let reference = try ServableReference(parsing: id)
                next = "/\(reference)"
            }
            let reply = try await client.request("POST", "/v1/web/links", body: JSONValue.object(["next": .string(next)]).encoded())
            if options.json { return Output.json(reply.json) }
            let url = reply.json["url"]?.stringValue ?? ""
            Swift.print(url)
            FileHandle.standardError.write(
                Data(
                    "This link signs you in as \(reply.json["login"]?.stringValue ?? "you") once, within two minutes: do not share it.\n"
                        .utf8))
            if !print { Self.openBrowser(url) }
        }
    }

    /// `$BROWSER`, else `xdg-open` on a desktop session; nothing on a bare login node.
    static func openBrowser(_ url: String) {
        let env = ProcessInfo.processInfo.environment
        var command: [String]
        if let browser = env["BROWSER"], !browser.isEmpty {
            command = [browser, url]
        } else if env["DISPLAY"] != nil || env["WAYLAND_DISPLAY"] != nil, FileManager.default.isExecutableFile(atPath: "/usr/bin/xdg-open")
        {
            command = ["/usr/bin/xdg-open", url]
        } else {
            return
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = command
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try? process.run()
    }
}
