import DLHubCore
import Foundation

/// What every page needs to know about where it is and who looks at it.
struct PageContext: Sendable {
    /// From this page back to the catalogue's root, as a relative path (`./`, `../`): links stay
    /// right behind a proxy that serves the catalogue under a prefix (Open OnDemand's
    /// `/rnode/<host>/<port>/`).
    var root: String
    /// The signed-in user, nil for an anonymous visitor.
    var caller: Caller?
    /// The service's URL as clients know it (`public_url`, else where it listens).
    var serviceURL: String
    var serviceID: String

    /// A catalogue path (`alice/iris@2`, `?q=x`) relative to this page.
    func link(_ path: String) -> SafeURL { SafeURL(trusted: root + path) }

    /// `owner/name[@N]` as a relative link, each part percent-encoded.
    func servableLink(owner: String, name: String, version: Int? = nil) -> SafeURL {
        var path = SafeURL.percentEncoded(owner) + "/" + SafeURL.percentEncoded(name)
        if let version { path += "@\(version)" }
        return link(path)
    }
}

/// The catalogue's pages, as `Node` trees: pure functions of what the routes looked up.
enum WebPages {
    // MARK: Layout

    static func page(
        title: String, context: PageContext, head: [Node] = [], main: [Node], query: String = ""
    ) -> String {
        let signedIn: Node
        if let caller = context.caller {
            signedIn = H.el(
                "form", [.action(context.link("-/signout")), Attribute("method", "post"), .class("session")],
                [
                    H.el("span", text: "Signed in as \(caller.login)"), .text(" "),
                    H.el("button", [Attribute("type", "submit")], text: "Sign out"),
                ])
        } else {
            signedIn = H.el(
                "p", [.class("session")],
                [
                    .text("Public servables only. To see yours, run "), H.el("code", text: "dlhub open"),
                    .text(" on a login node."),
                ])
        }
        let document = H.el(
            "html", [Attribute("lang", "en")],
            [
                H.el(
                    "head", [],
                    [
                        .void("meta", [Attribute("charset", "utf-8")]),
                        .void("meta", [Attribute("name", "viewport"), Attribute("content", "width=device-width, initial-scale=1")]),
                        H.el("title", text: title + " · DLHub"),
                        .void("link", [Attribute("rel", "stylesheet"), .href(context.link("-/style.css"))]),
                        H.el("script", [Attribute.srcScript(context.link("-/copy.js")), .flag("defer")]),
                    ] + head),
                H.el(
                    "body", [],
                    [
                        H.el("a", [.href(SafeURL(trusted: "#main")), .class("skip")], text: "Skip to content"),
                        H.el(
                            "header", [],
                            [
                                H.a(context.link(""), text: "DLHub", [.class("brand")]),
                                H.el(
                                    "form", [Attribute("role", "search"), .action(context.link("")), Attribute("method", "get")],
                                    [
                                        H.el("label", [Attribute("for", "site-q"), .class("visually-hidden")], text: "Search servables"),
                                        .void(
                                            "input",
                                            [
                                                Attribute("type", "search"), .id("site-q"), Attribute("name", "q"),
                                                Attribute("value", query),
                                                Attribute("placeholder", "Search models"),
                                            ]),
                                        H.el("button", [Attribute("type", "submit")], text: "Search"),
                                    ]),
                                signedIn,
                            ]),
                        H.el("main", [.id("main")], main),
                        H.el(
                            "footer", [],
                            [
                                H.el(
                                    "p",
                                    text:
                                        "DLHub for Slurm: models published on this cluster, run on its compute nodes. Every page is also in the JSON API under /v1/."
                                )
                            ]),
                    ]),
            ])
        return "<!DOCTYPE html>\n" + document.rendered
    }

    // MARK: Search

    struct SearchQuery: Sendable, Equatable {
        var text = ""
        var domain = ""
        var author = ""
        var type = ""
        var owner = ""
        var year = ""
        var page = 1

        static let pageSize = 20
        static let maxPage = 500

        /// From the query string, each field cut to a bound (nothing a visitor sends is refused:
        /// the page says what it searched for).
        init(parameters: [String: String]) {
            func field(_ name: String, _ bound: Int = 200) -> String {
                String((parameters[name] ?? "").trimmingCharacters(in: .whitespacesAndNewlines).prefix(bound))
            }
            text = field("q", 256)
            domain = field("domain")
            author = field("author")
            type = field("type", 64)
            owner = field("owner", 64)
            year = field("year", 4)
            page = min(max(Int(parameters["page"] ?? "") ?? 1, 1), Self.maxPage)
        }

        init() {}

        var isEmpty: Bool { text.isEmpty && domain.isEmpty && author.isEmpty && type.isEmpty && owner.isEmpty && year.isEmpty }

        /// The query string for these filters with `changes` applied (`page` reset unless given).
        func queryString(_ changes: [String: String] = [:]) -> String {
            var fields: [(String, String)] = [
                ("q", text), ("domain", domain), ("author", author), ("type", type), ("owner", owner), ("year", year),
            ]
            for (k, v) in changes {
                if let i = fields.firstIndex(where: { $0.0 == k }) { fields[i].1 = v } else { fields.append((k, v)) }
            }
            let pairs = fields.filter { !$0.1.isEmpty }.map { SafeURL.percentEncoded($0.0) + "=" + SafeURL.percentEncoded($0.1) }
            return pairs.isEmpty ? "" : "?" + pairs.joined(separator: "&")
        }

        /// Whether an entry passes the filters the catalog's search does not apply (type, year).
        func keeps(_ e: IndexEntry) -> Bool {
            if !type.isEmpty, e.loader.caseInsensitiveCompare(type) != .orderedSame { return false }
            if !year.isEmpty, !e.published.hasPrefix(year) { return false }
            return true
        }
    }

    static func search(
        _ query: SearchQuery, results: [IndexEntry], total: Int, facets: (domains: [(String, Int)], types: [(String, Int)]),
        context: PageContext
    ) -> String {
        let heading: String
        if query.isEmpty {
            heading = "Models on this cluster"
        } else {
            heading = total == 1 ? "1 servable found" : "\(total) servables found"
        }
        var main: [Node] = [H.el("h1", text: heading)]
        main.append(filters(query, facets: facets, context: context))
        if results.isEmpty {
            main.append(
                H.el(
                    "p", [.class("empty")],
                    text: query.isEmpty
                        ? "Nothing is published that you can see yet. Publish one with dlhub publish."
                        : "No servable that you can see matches. Try fewer words or fewer filters."))
        } else {
            main.append(
                H.el("ol", [.class("results"), Attribute("aria-label", "Search results")], results.map { card($0, context: context) }))
        }
        let pages = (total + SearchQuery.pageSize - 1) / SearchQuery.pageSize
        if pages > 1 {
            var links: [Node] = []
            if query.page > 1 {
                links.append(
                    H.a(context.link(query.queryString(["page": "\(query.page - 1)"])), text: "Previous", [Attribute("rel", "prev")]))
            }
            links.append(H.el("span", text: "Page \(query.page) of \(pages)"))
            if query.page < pages {
                links.append(H.a(context.link(query.queryString(["page": "\(query.page + 1)"])), text: "Next", [Attribute("rel", "next")]))
            }
            main.append(H.el("nav", [.class("pages"), Attribute("aria-label", "Pages")], links))
        }
        return page(title: query.isEmpty ? "Models" : "Search: \(query.text)", context: context, main: main, query: query.text)
    }

    static func filters(_ query: SearchQuery, facets: (domains: [(String, Int)], types: [(String, Int)]), context: PageContext) -> Node {
        func field(_ name: String, _ label: String, _ value: String, placeholder: String = "") -> Node {
            H.el(
                "p", [],
                [
                    H.el("label", [Attribute("for", "f-" + name)], text: label),
                    .void(
                        "input",
                        [
                            Attribute("type", name == "year" ? "number" : "text"), .id("f-" + name), Attribute("name", name),
                            Attribute("value", value),
                        ] + (placeholder.isEmpty ? [] : [Attribute("placeholder", placeholder)])),
                ])
        }
        var domainLinks: [Node] = []
        for (domain, count) in facets.domains.prefix(20) {
            domainLinks.append(H.el("li", [], [H.a(context.link(query.queryString(["domain": domain])), text: "\(domain) (\(count))")]))
        }
        var typeLinks: [Node] = []
        for (type, count) in facets.types.prefix(20) {
            typeLinks.append(H.el("li", [], [H.a(context.link(query.queryString(["type": type])), text: "\(type) (\(count))")]))
        }
        return H.el(
            "section", [.class("filters"), Attribute("aria-labelledby", "filters-h")],
            [
                H.el("h2", [.id("filters-h")], text: "Filters"),
                H.el(
                    "form", [.action(context.link("")), Attribute("method", "get")],
                    [
                        field("q", "Words", query.text),
                        field("domain", "Domain", query.domain, placeholder: "materials science"),
                        field("author", "Author", query.author),
                        field("type", "Type", query.type, placeholder: "sklearn"),
                        field("owner", "Owner", query.owner),
                        field("year", "Year", query.year),
                        H.el("button", [Attribute("type", "submit")], text: "Apply"),
                        .text(" "),
                        H.a(context.link(""), text: "Clear"),
                    ]),
                domainLinks.isEmpty ? .empty : H.el("h3", text: "Domains"),
                domainLinks.isEmpty ? .empty : H.el("ul", [.class("facets")], domainLinks),
                typeLinks.isEmpty ? .empty : H.el("h3", text: "Types"),
                typeLinks.isEmpty ? .empty : H.el("ul", [.class("facets")], typeLinks),
            ])
    }

    static func card(_ e: IndexEntry, context: PageContext) -> Node {
        let firstLine = e.description.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        return H.el(
            "li", [.class("card")],
            [
                H.el("h2", [], [H.a(context.servableLink(owner: e.owner, name: e.name), text: e.title.isEmpty ? e.name : e.title)]),
                H.el(
                    "p", [.class("meta")],
                    text: "\(e.owner)/\(e.name) · version \(e.version) · \(e.loader)"
                        + (e.published.isEmpty ? "" : " · \(e.published.prefix(10))")),
                e.authors.isEmpty ? .empty : H.el("p", [.class("authors")], text: e.authors.joined(separator: "; ")),
                firstLine.isEmpty ? .empty : H.el("p", text: String(firstLine.prefix(300))),
                e.domains.isEmpty
                    ? .empty : H.el("ul", [.class("tags"), Attribute("aria-label", "Domains")], e.domains.map { H.el("li", text: $0) }),
            ])
    }

    // MARK: A servable's page

    struct ServablePage: Sendable {
        var record: RegistryRecord
        var versions: [IndexEntry]
        var environment: JSONValue
        /// The model card, rendered (`ModelCard.render`).
        var modelCard: Node?
        var citation: Citation
        var usage: ServableUsage.Summary?
        /// The page's own absolute URL for this version (what a DOI resolves to).
        var landingURL: String
        /// Whether the reference named a version (`@N` or a digest) rather than the latest.
        var pinned: Bool
    }

    static func servable(_ p: ServablePage, context: PageContext) -> String {
        let r = p.record
        let m = r.metadata
        let c = p.citation
        let ref = "\(r.owner)/\(r.name)@\(r.version)"
        var main: [Node] = []
        main.append(
            H.el(
                "hgroup", [],
                [
                    H.el("h1", text: c.title),
                    H.el("p", [.class("meta")], text: "\(ref) · \(m.loader.shortName) · published \(m.publicationDate?.prefix(10) ?? "")"),
                ]))
        if let w = r.withdrawal {
            main.append(
                H.el(
                    "section", [.class("tombstone"), Attribute("role", "note"), Attribute("aria-labelledby", "withdrawn-h")],
                    [
                        H.el("h2", [.id("withdrawn-h")], text: "This version was withdrawn"),
                        H.el("p", text: "Withdrawn by \(w.by) on \(w.at.prefix(10))." + (w.reason.isEmpty ? "" : " Reason: \(w.reason)")),
                        H.el(
                            "p",
                            text:
                                "Its identifier and citation keep resolving here; it no longer runs. The digest below still names exactly what was published."
                        ),
                    ]))
        }
        main.append(summary(p, context: context))
        if let card = p.modelCard {
            main.append(
                H.el(
                    "section", [.class("model-card"), Attribute("aria-labelledby", "card-h")],
                    [H.el("h2", [.id("card-h")], text: "Model card"), H.el("div", [.class("card-body")], [card])]))
        }
        main.append(interface(m))
        if r.withdrawal == nil { main.append(howToRun(p, context: context)) }
        main.append(citationSection(p, context: context))
        main.append(versions(p, context: context))
        main.append(environmentSection(p.environment))
        if let u = p.usage, m.visibleTo.contains(.everyone) {
            main.append(
                H.el(
                    "section", [Attribute("aria-labelledby", "usage-h")],
                    [
                        H.el("h2", [.id("usage-h")], text: "Usage"),
                        H.el(
                            "p", [.class("usage")],
                            text:
                                "\(u.served) input\(u.served == 1 ? "" : "s") answered since the service started; median latency \(formatSeconds(u.medianSeconds)); last used \(ISO8601DateFormatter().string(from: u.lastUsed))."
                        ),
                    ]))
        }
        let api =
            context.serviceURL + "/v1/servables/" + SafeURL.percentEncoded(r.owner) + "/" + SafeURL.percentEncoded(r.name)
            + "@\(r.version)"
        var head: [Node] = [
            .void("link", [Attribute("rel", "canonical"), .href(SafeURL(trusted: p.landingURL))]),
            .void("link", [Attribute("rel", "alternate"), Attribute("type", "application/json"), .href(SafeURL(trusted: api))]),
            .void(
                "link",
                [
                    Attribute("rel", "alternate"), Attribute("type", "application/vnd.datacite.datacite+json"),
                    .href(citationLink(r, format: "datacite", context: context)),
                ]),
            .void("meta", [Attribute("name", "description"), Attribute("content", String((c.abstract ?? m.description).prefix(300)))]),
        ]
        head += citationMeta(p)
        head.append(.jsonLD(jsonLD(p)))
        if p.pinned == false || r.withdrawal != nil {
            head.append(.void("meta", [Attribute("name", "robots"), Attribute("content", "noindex")]))
        }
        return page(title: c.title, context: context, head: head, main: main)
    }

    static func summary(_ p: ServablePage, context: PageContext) -> Node {
        let c = p.citation
        let m = p.record.metadata
        var rows: [Node] = []
        func row(_ label: String, _ value: [Node]) {
            rows.append(H.el("dt", text: label))
            rows.append(H.el("dd", [], value))
        }
        if !c.creators.isEmpty {
            var authors: [Node] = []
            for (i, a) in c.creators.enumerated() {
                if i > 0 { authors.append(.text("; ")) }
                authors.append(.text(a.name))
                if let orcid = a.orcid {
                    authors.append(.text(" "))
                    authors.append(
                        H.a(
                            SafeURL(trusted: "https://orcid.org/" + orcid), text: "ORCID",
                            [Attribute("rel", "author"), Attribute("aria-label", "ORCID iD of \(a.name): \(orcid)")]))
                }
                if !a.affiliations.isEmpty { authors.append(.text(" (" + a.affiliations.joined(separator: ", ") + ")")) }
            }
            row("Authors", authors)
        }
        let abstract = c.abstract ?? m.description
        if !abstract.isEmpty { row("Abstract", [.text(abstract)]) }
        if !m.domains.isEmpty { row("Domains", [H.el("ul", [.class("tags")], m.domains.map { H.el("li", text: $0) })]) }
        row("Rights", [.text(c.license ?? "Not stated: ask the owner before reuse")])
        row("Owner", [H.a(context.link("?owner=" + SafeURL.percentEncoded(p.record.owner)), text: p.record.owner)])
        if let doi = c.doi { row("DOI", [H.a(SafeURL.doi(doi), text: doi)]) }
        row("Digest", [H.el("code", [.class("digest")], text: p.record.digest)])
        if !c.related.isEmpty {
            row(
                "Related",
                [
                    H.el(
                        "ul", [],
                        c.related.map { rel in
                            H.el("li", [], [.text(rel.relation + ": "), relatedLink(rel)])
                        })
                ])
        }
        return H.el("dl", [.class("summary")], rows)
    }

    /// A related identifier as a link where its type says where it resolves; as text otherwise.
    static func relatedLink(_ rel: Citation.RelatedIdentifier) -> Node {
        let id = rel.identifier
        switch rel.type.uppercased() {
        case "DOI" where Citation.isDOI(id): return H.a(SafeURL.doi(id), text: id)
        case "ARXIV":
            let bare = id.lowercased().hasPrefix("arxiv:") ? String(id.dropFirst(6)) : id
            return H.a(SafeURL(trusted: "https://arxiv.org/abs/" + SafeURL.percentEncoded(bare, keeping: "/.")), text: id)
        case "URL", "URN", "HANDLE":
            if let url = SafeURL(userWritten: id) { return H.a(url, text: id, [Attribute("rel", "nofollow noopener noreferrer")]) }
            return .text(id)
        default: return .text("\(rel.type) \(id)")
        }
    }

    static func interface(_ m: ServableMetadata) -> Node {
        let example = m.input.example().map { $0.encodedString() }
        var rows: [Node] = [
            H.el("tr", [], [H.el("th", [Attribute("scope", "row")], text: "Input"), H.el("td", text: m.input.description)]),
            H.el("tr", [], [H.el("th", [Attribute("scope", "row")], text: "Output"), H.el("td", text: m.output.description)]),
        ]
        if let example {
            rows.append(
                H.el(
                    "tr", [],
                    [H.el("th", [Attribute("scope", "row")], text: "Example input"), H.el("td", [], [H.el("code", text: example)])]))
        }
        if case .object(let params) = m.parameters, !params.isEmpty {
            rows.append(
                H.el(
                    "tr", [],
                    [
                        H.el("th", [Attribute("scope", "row")], text: "Parameters"),
                        H.el("td", [], [H.el("code", text: m.parameters.encodedString())]),
                    ]))
        }
        return H.el(
            "section", [Attribute("aria-labelledby", "io-h")],
            [
                H.el("h2", [.id("io-h")], text: "Inputs and outputs"),
                H.el(
                    "table", [.class("io")],
                    [
                        H.el("caption", [.class("visually-hidden")], text: "What the servable takes and returns"),
                        H.el("tbody", [], rows),
                    ]),
            ])
    }

    /// The CLI, Python and curl lines for this version, with an example input.
    static func snippets(_ p: ServablePage, context: PageContext) -> (cli: String, python: String, curl: String) {
        let r = p.record
        let ref = p.pinned ? "\(r.owner)/\(r.name)@\(r.version)" : "\(r.owner)/\(r.name)"
        let example = r.metadata.input.example()
        let json = example?.encodedString() ?? "INPUT"
        let cli = "dlhub run \(ref) --input \(shellQuoted(json))"
        let python = """
            from dlhub_slurm import DLHubClient
            dl = DLHubClient()
            dl.run("\(ref)", \(example.map(pythonLiteral) ?? "INPUT"))
            """
        let body = "{\"input\": \(json)}"
        let curl = """
            curl -s -H "Authorization: Munge $(munge -s dlhub-service:\(context.serviceID))" \\
              -H 'Content-Type: application/json' -d \(shellQuoted(body)) \\
              '\(context.serviceURL)/v1/servables/\(ref)/run?wait=60'
            """
        return (cli, python, curl)
    }

    static func howToRun(_ p: ServablePage, context: PageContext) -> Node {
        let s = snippets(p, context: context)
        let note: Node =
            p.record.metadata.input.example() == nil
            ? H.el("p", text: "Replace INPUT with a JSON value of type \(p.record.metadata.input.description).")
            : H.el("p", text: "The example input is made from the declared input type; put your own data in its place.")
        return H.el(
            "section", [.class("run"), Attribute("aria-labelledby", "run-h")],
            [
                H.el("h2", [.id("run-h")], text: "How to run it here"),
                H.el(
                    "p", [],
                    [
                        .text("On a login node, after "), H.el("code", text: "module load dlhub"),
                        .text(". The request is batched onto a pilot job; the first may wait for Slurm to start one."),
                    ]),
                note,
                snippet("run-cli", "Command line", s.cli),
                snippet("run-python", "Python", s.python),
                snippet("run-curl", "curl (HTTP API)", s.curl),
            ])
    }

    /// A block of text to copy: its label, a copy button (shown by the script) and `extra`.
    static func snippet(_ id: String, _ label: String, _ code: String, extra: [Node] = []) -> Node {
        H.el(
            "figure", [.class("snippet")],
            [
                H.el(
                    "figcaption", [],
                    [
                        .text(label + " "),
                        H.el(
                            "button",
                            [
                                Attribute("type", "button"), Attribute("data-copy", id), .flag("hidden"),
                                Attribute("aria-label", "Copy: " + label),
                            ], text: "Copy"),
                    ] + extra),
                H.el("pre", [], [H.el("code", [.id(id)], text: code)]),
            ])
    }

    static func citationLink(_ r: RegistryRecord, format: String, context: PageContext) -> SafeURL {
        SafeURL(
            trusted: context.servableLink(owner: r.owner, name: r.name, version: r.version).text + "/citation?format="
                + SafeURL.percentEncoded(format))
    }

    static func citationSection(_ p: ServablePage, context: PageContext) -> Node {
        let c = p.citation
        let r = p.record
        func block(_ id: String, _ label: String, _ format: String, _ text: String, file: String) -> Node {
            snippet(
                id, label, text,
                extra: [
                    .text(" "),
                    H.a(citationLink(r, format: format, context: context), text: "Download " + file, [Attribute("download", file)]),
                ])
        }
        let base = "\(r.owner)-\(r.name)-\(r.version)"
        return H.el(
            "section", [Attribute("aria-labelledby", "cite-h")],
            [
                H.el("h2", [.id("cite-h")], text: "How to cite it"),
                block("cite-text", "Text", "text", c.text, file: base + ".txt"),
                block("cite-bibtex", "BibTeX", "bibtex", c.bibtex, file: base + ".bib"),
                H.el(
                    "details", [],
                    [
                        H.el("summary", text: "DataCite and CFF"),
                        block("cite-datacite", "DataCite 4 JSON", "datacite", c.render(.datacite), file: base + ".datacite.json"),
                        block("cite-cff", "Citation File Format", "cff", c.cff, file: base + ".cff"),
                    ]),
            ])
    }

    static func versions(_ p: ServablePage, context: PageContext) -> Node {
        let r = p.record
        let rows = p.versions.sorted { $0.version > $1.version }.prefix(200).map { v -> Node in
            let current = v.version == r.version
            let state = v.withdrawn ? "withdrawn" : "available"
            return H.el(
                "tr", current ? [.class("current")] : [],
                [
                    H.el(
                        "th", [Attribute("scope", "row")],
                        [
                            current
                                ? H.el("span", [Attribute("aria-current", "page")], text: "@\(v.version)")
                                : H.a(context.servableLink(owner: r.owner, name: r.name, version: v.version), text: "@\(v.version)")
                        ]),
                    H.el("td", text: String(v.published.prefix(10))),
                    H.el("td", [], [H.el("code", [.class("digest")], text: v.digest)]),
                    H.el("td", text: state),
                ])
        }
        return H.el(
            "section", [Attribute("aria-labelledby", "versions-h")],
            [
                H.el("h2", [.id("versions-h")], text: "Versions"),
                H.el(
                    "table", [.class("versions")],
                    [
                        H.el(
                            "thead", [],
                            [
                                H.el(
                                    "tr", [],
                                    ["Version", "Published", "Digest", "State"].map { H.el("th", [Attribute("scope", "col")], text: $0) })
                            ]),
                        H.el("tbody", [], Array(rows)),
                    ]),
            ])
    }

    static func environmentSection(_ env: JSONValue) -> Node {
        var items: [Node] = []
        let kind = env["type"]?.stringValue ?? "default"
        switch kind {
        case "python": items.append(H.el("p", text: "A Python environment built for it by the site:"))
        case "modules": items.append(H.el("p", text: "Environment modules loaded before it starts:"))
        case "container": items.append(H.el("p", text: "A container image:"))
        default: items.append(H.el("p", text: "The site's default worker environment."))
        }
        let packages = (env["packages"]?.arrayValue ?? []).compactMap(\.stringValue)
        if !packages.isEmpty { items.append(H.el("ul", [.class("packages")], packages.map { H.el("li", [], [H.el("code", text: $0)]) })) }
        let modules = (env["modules"]?.arrayValue ?? []).compactMap(\.stringValue)
        if !modules.isEmpty { items.append(H.el("ul", [], modules.map { H.el("li", [], [H.el("code", text: "module load " + $0)]) })) }
        if let image = env["image"]?.stringValue { items.append(H.el("p", [], [H.el("code", text: image)])) }
        if let state = env["state"]?.stringValue { items.append(H.el("p", [.class("meta")], text: "State: " + state)) }
        return H.el("section", [Attribute("aria-labelledby", "env-h")], [H.el("h2", [.id("env-h")], text: "Environment")] + items)
    }

    // MARK: Metadata for machines

    /// Highwire Press `citation_*` tags, which Google Scholar and Zotero read.
    static func citationMeta(_ p: ServablePage) -> [Node] {
        let c = p.citation
        func meta(_ name: String, _ value: String) -> Node {
            .void("meta", [Attribute("name", name), Attribute("content", value)])
        }
        var tags = [meta("citation_title", c.title)]
        for a in c.creators { tags.append(meta("citation_author", a.name)) }
        if let date = c.publicationDate, date.count >= 10 {
            tags.append(meta("citation_publication_date", date.prefix(10).replacingOccurrences(of: "-", with: "/")))
        } else if !c.year.isEmpty {
            tags.append(meta("citation_publication_date", c.year))
        }
        if let doi = c.doi { tags.append(meta("citation_doi", doi)) }
        tags.append(meta("citation_version", String(c.version)))
        tags.append(meta("citation_publisher", c.publisher))
        tags.append(meta("citation_public_url", p.landingURL))
        return tags
    }

    /// schema.org JSON-LD.
    static func jsonLD(_ p: ServablePage) -> JSONValue {
        let c = p.citation
        var doc: [String: JSONValue] = [
            "@context": "https://schema.org", "@type": "SoftwareApplication", "applicationCategory": "Machine learning model",
            "name": .string(c.title), "version": .string(String(c.version)), "url": .string(p.landingURL),
            "publisher": ["@type": "Organization", "name": .string(c.publisher)],
        ]
        var identifiers: [JSONValue] = [.string(p.record.digest)]
        if let doi = c.doi { identifiers.insert(.string("https://doi.org/" + doi), at: 0) }
        doc["identifier"] = .array(identifiers)
        if let abstract = c.abstract ?? (p.record.metadata.description.isEmpty ? nil : p.record.metadata.description) {
            doc["description"] = .string(abstract)
        }
        doc["author"] = .array(
            c.creators.map { a in
                var person: [String: JSONValue] = ["@type": "Person", "name": .string(a.name)]
                if let g = a.givenName { person["givenName"] = .string(g) }
                if let f = a.familyName { person["familyName"] = .string(f) }
                if let o = a.orcid { person["@id"] = .string("https://orcid.org/" + o) }
                return .object(person)
            })
        if let date = c.publicationDate { doc["datePublished"] = .string(String(date.prefix(10))) }
        if let license = c.license { doc["license"] = .string(license) }
        if !c.keywords.isEmpty { doc["keywords"] = .array(c.keywords.map { .string($0) }) }
        return .object(doc)
    }

    // MARK: Other pages

    static func notFound(_ what: String, context: PageContext) -> String {
        page(
            title: "Not found", context: context,
            main: [
                H.el("h1", text: "Not found"),
                H.el("p", text: "There is no servable \(what.prefix(200)) that you can see."),
                H.el(
                    "p", [],
                    [
                        .text("It may be private: run "), H.el("code", text: "dlhub open"),
                        .text(" on a login node to sign in, or "), H.a(context.link(""), text: "search the catalogue"), .text("."),
                    ]),
            ])
    }

    /// A sign-in link that another site sent the browser to: who it signs in, and a button.
    static func confirmSignin(code: String, login: String, context: PageContext) -> String {
        page(
            title: "Sign in", context: context,
            main: [
                H.el("h1", text: "Sign in as \(login)?"),
                H.el(
                    "p",
                    text:
                        "Another page sent you here with a link that signs this browser in as \(login). If you did not just run dlhub open yourself, close this page."
                ),
                H.el(
                    "form", [.action(context.link("-/signin")), Attribute("method", "post")],
                    [
                        .void("input", [Attribute("type", "hidden"), Attribute("name", "code"), Attribute("value", code)]),
                        H.el("button", [Attribute("type", "submit")], text: "Sign in as \(login)"),
                    ]),
            ])
    }

    static func message(_ title: String, _ text: String, context: PageContext) -> String {
        page(title: title, context: context, main: [H.el("h1", text: title), H.el("p", text: text)])
    }

    // MARK: Helpers

    static func formatSeconds(_ s: Double) -> String {
        s < 1 ? String(format: "%.1f ms", s * 1000) : String(format: "%.2f s", s)
    }

    static func shellQuoted(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    /// A JSON value as a Python literal (`true` → `True`, `null` → `None`).
    static func pythonLiteral(_ v: JSONValue) -> String {
        switch v {
        case .null: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .array(let a): return "[" + a.map(pythonLiteral).joined(separator: ", ") + "]"
        case .object(let o):
            return "{" + o.keys.sorted().map { JSONValue.string($0).encodedString() + ": " + pythonLiteral(o[$0]!) }.joined(separator: ", ")
                + "}"
        default: return v.encodedString()
        }
    }
}

extension Attribute {
    /// `src` of a script: only this catalogue's own files.
    static func srcScript(_ url: SafeURL) -> Attribute { .init(urlName: "src", url) }
}
