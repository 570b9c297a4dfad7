import ArgumentParser
import DLHubCore
import Foundation

/// `dlhub search QUERY`: full-text search.
struct SearchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search", abstract: "Search titles, descriptions, authors, domains, names and input/output types.")

    @OptionGroup var options: ClientOptions
    @Argument(help: "Words to look for (each matches as a prefix).") var query: [String] = []
    @Option(help: "Only this owner's servables.") var owner: String?
    @Option(help: "Only servables in this domain.") var domain: String?
    @Option(help: "Only servables by this author (part of the name, any case).") var author: String?
    @Option(help: "The servable known by this DOI.") var doi: String?
    @Option(help: "At most this many.") var limit: Int = 50

    func run() async throws {
        try await CLIError.guarding {
            try await Self.show(
                query: query.joined(separator: " "), owner: owner, domain: domain, author: author, doi: doi, limit: limit, options: options)
        }
    }

    static func show(
        query: String?, owner: String?, domain: String?, author: String? = nil, doi: String? = nil, limit: Int, options: ClientOptions
    ) async throws {
        var items = ["limit=\(limit)"]
        if let author { items.append("author=\(escape(author))") }
        if let doi { items.append("doi=\(escape(doi))") }
        if let query, !query.isEmpty { items.append("q=\(escape(query))") }
        if let owner { items.append("owner=\(escape(owner))") }
        if let domain { items.append("domain=\(escape(domain))") }
        let reply = try await options.client().request("GET", "/v1/servables?" + items.joined(separator: "&"))
        if options.json { return Output.json(reply.json) }
        let rows = (reply.json["servables"]?.arrayValue ?? []).map { s -> [String] in
            [
                "\(s["id"]?.stringValue ?? "")@\(s["version"]?.intValue ?? 0)", s["type"]?.stringValue ?? "",
                (s["domains"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ","),
                Output.truncate(s["title"]?.stringValue ?? "", 50),
            ]
        }
        if rows.isEmpty {
            print(query.map { $0.isEmpty ? "no servables you can see" : "nothing matches '\($0)'" } ?? "no servables you can see")
            return
        }
        Output.table(["ID", "TYPE", "DOMAINS", "TITLE"], rows)
    }

    static func escape(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? s
    }
}
