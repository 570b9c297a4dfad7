import DLHubCore
import DLHubTesting
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Ink
import NIOCore
import PropertyBased
import Testing

@testable import DLHubService

/// The web catalogue's rendering (escaping, model cards, links) and its routes (visibility, the
/// sign-in link and the session cookie, headers), through the router with real munge. The pages
/// in a real browser are tested in EndToEndTests/WebBrowserTests.
@Suite struct WebCatalogueTests {
    // MARK: Model cards

    /// An independent check of rendered markup (not HTMLAllowlist): no element that runs or
    /// loads anything, no event handler or style attribute, no link but http(s), mailto or
    /// relative.
    static func inertProblems(_ html: String) -> [String] {
        var problems: [String] = []
        let lower = html.lowercased()
        for tag in [
            "<script", "<iframe", "<svg", "<img", "<style", "<link", "<meta", "<form", "<base", "<object", "<embed", "<math", "<details",
            "<div", "<input", "<a href=\"javascript", "<!--", "<![cdata",
        ] where lower.contains(tag) {
            problems.append("contains \(tag)")
        }
        if lower.range(of: #"<[a-z0-9]+[^>]*\s(on[a-z]+|style|src|srcset|formaction)\s*="#, options: .regularExpression) != nil {
            problems.append("an element has an event handler, style or src attribute")
        }
        // The targets of real links (an `href="` in escaped text is text).
        let anchors = try! NSRegularExpression(pattern: #"<a\s[^<>]*?href="([^"]*)""#)
        for match in anchors.matches(in: html, range: NSRange(html.startIndex..., in: html)) {
            guard let range = Range(match.range(at: 1), in: html) else { continue }
            let url = HTMLAllowlist.unescapeEntities(String(html[range])).lowercased()
            let head = url.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
            if head.contains(":"), !(url.hasPrefix("http://") || url.hasPrefix("https://") || url.hasPrefix("mailto:")) {
                problems.append("links to \(url)")
            }
            if url.hasPrefix("//") || url.hasPrefix("\\") { problems.append("links to another host: \(url)") }
        }
        return problems
    }

    @Test func everyHostileFragmentAloneRendersInert() {
        for fragment in HostileMarkdown.fragments {
            let html = ModelCard.render(fragment).rendered
            #expect(Self.inertProblems(html).isEmpty, "\(fragment.debugDescription) rendered as \(html)")
        }
    }

    /// The allowlist alone (behind the modifiers) refuses whatever Ink makes of each fragment
    /// unmodified that is not inert: were a modifier to miss one, the card falls back to text.
    @Test func theAllowlistAloneRefusesWhatInkPassesThrough() {
        for fragment in HostileMarkdown.fragments {
            let raw = Ink.MarkdownParser().html(from: fragment)
            #expect(Self.inertProblems(raw).isEmpty || !HTMLAllowlist.permits(raw), "\(fragment.debugDescription) as \(raw)")
        }
    }

    /// Hostile and benign fragments joined at random, with separators that change how Markdown
    /// reads them (the same line, a new line, a new paragraph, a list, a quote).
    @Test func generatedModelCardsRenderInert() async {
        let pool = HostileMarkdown.fragments + HostileMarkdown.benign
        let pieces = Gen.int(in: 0...(pool.count - 1)).array(of: 1...8)
        let joins = Gen.int(in: 0...5).array(of: 8...8)
        await propertyCheck(count: 400, input: pieces, joins) { picks, separators in
            let glue = [" ", "\n", "\n\n", "\n- ", "\n> ", "**"]
            var card = ""
            for (i, p) in picks.enumerated() { card += (i == 0 ? "" : glue[separators[i % separators.count]]) + pool[p] }
            let html = ModelCard.render(card).rendered
            #expect(Self.inertProblems(html).isEmpty, "card \(card.debugDescription) rendered as \(html)")
        }
    }

    @Test func benignMarkdownKeepsItsStructure() {
        let card = HostileMarkdown.benign.joined(separator: "\n\n")
        guard case .sanitized(let html) = ModelCard.render(card) else {
            Issue.record("a benign card fell back to plain text")
            return
        }
        for expected in [
            "<h3>Iris classifier</h3>", "<strong>150</strong>", "<li>accuracy: 0.97</li>",
            "<a href=\"https://doi.org/10.1016/j.jpdc.2020.08.006\" rel=\"nofollow noopener noreferrer\">the paper</a>",
            "<pre><code>model.predict(x)\n</code></pre>", "<blockquote>", "<th>metric</th>", "<td>0.96</td>",
            "<a href=\"../alice/iris@1\" rel=\"nofollow noopener noreferrer\">link</a>", "<a href=\"#versions\"",
        ] {
            #expect(html.markup.contains(expected), "missing \(expected) in \(html.markup)")
        }
    }

    @Test func unsafeLinksKeepTheirTextAndImagesBecomeTheirAltText() {
        let html = ModelCard.render("[click me](javascript:alert(1)) and ![a plot](plot.png)").rendered
        #expect(html.contains("click me"))
        #expect(!html.contains("javascript"))
        #expect(html.contains("[image: a plot]"))
    }

    @Test func renderedCardsAreKeptByDigestWithinABound() {
        let cache = ModelCard.Cache(capacity: 2)
        let reads = LockedBox(0)
        func card(_ digest: String, _ text: String?) -> String? {
            cache.rendered(digest: digest) {
                reads.update { $0 += 1 }
                return text
            }?.rendered
        }
        #expect(card("a", "# A") == "<h3>A</h3>")
        #expect(card("a", "# changed") == "<h3>A</h3>", "a version's card is rendered once")
        #expect(card("none", nil) == nil)
        #expect(card("none", "# late") == nil, "so is the absence of one")
        #expect(reads.value == 2)
        _ = card("b", "# B")
        #expect(card("a", "# again") == "<h3>again</h3>", "the oldest went when the third came")
    }

    // MARK: The builder

    @Test func textAndAttributeValuesAreEscaped() {
        let hostile = "\"><script>alert('x')</script>&"
        let node = H.el("p", [Attribute("title", hostile)], text: hostile)
        #expect(
            node.rendered
                == "<p title=\"&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;\">&quot;&gt;&lt;script&gt;alert('x')&lt;/script&gt;&amp;</p>"
                .replacingOccurrences(of: ">&quot;&gt;&lt;script&gt;alert('x')", with: ">\"&gt;&lt;script&gt;alert('x')"))
        let ld = Node.jsonLD(["name": .string("</script><script>alert(1)</script>&")]).rendered
        #expect(!ld.dropFirst(10).contains("<script>"))
        #expect(ld.contains("\\u003c/script\\u003e"))
        #expect(ld.hasSuffix("</script>"))
    }

    @Test func onlyHTTPMailtoAndRelativeURLsAreSafe() {
        for bad in [
            "javascript:alert(1)", " JavaScript:x", "data:text/html,x", "vbscript:x", "http://a\"b", "http://a b", "file:///etc/passwd",
        ] {
            #expect(SafeURL(userWritten: bad) == nil, "\(bad)")
        }
        for bad in ["//evil.example", "\\\\evil", "javascript:x", "x:y", "a b"] {
            #expect(SafeURL(relativeUserWritten: bad) == nil, "\(bad)")
        }
        for good in ["https://doi.org/10.1/x", "http://example.org/?a=1&b=2", "mailto:a@b.org"] {
            #expect(SafeURL(userWritten: good) != nil, "\(good)")
        }
        for good in ["../alice/iris@1", "#versions", "?q=x", "alice/iris", "a/b:c"] {
            #expect(SafeURL(relativeUserWritten: good) != nil, "\(good)")
        }
        #expect(WebRoutes.safeNext("/alice/iris@2") == "/alice/iris@2")
        // The last five found by the red team: behind a proxy's prefix they climb out of it.
        for bad in [
            "//evil.example/", "https://evil.example", "alice", "/\\evil", "/a b", "/<x>", "/.//evil.example", "/..//evil.example",
            "/-/..//evil.example", "/./%2F/evil.example", "/alice/%2e%2e/x",
        ] {
            #expect(WebRoutes.safeNext(bad) == nil, "\(bad)")
        }
        #expect(SafeURL.doi("10.1000/a b<c>").text == "https://doi.org/10.1000/a%20b%3Cc%3E")
    }

    @Test func examplesFitTheirTypes() {
        let types: [DataType] = [
            .ndarray(shape: [nil, 4], item: .float), .ndarray(shape: [nil], item: nil), .list(item: .string),
            .tuple([.integer, .boolean]), .dict(properties: ["x": .float, "tags": .list(item: .string)]), .string, .integer,
            .ndarray(shape: [2, 3], item: .integer),
        ]
        for t in types {
            guard let example = t.example() else {
                Issue.record("no example for \(t)")
                continue
            }
            #expect(t.check(example) == nil, "\(t): \(example.encodedString())")
        }
        #expect(DataType.ndarray(shape: [nil, 784], item: .float).example() == nil)
        #expect(DataType.file.example() == nil)
        #expect(WebPages.pythonLiteral(["a": true, "b": .null, "c": [1, 2.5]]) == "{\"a\": True, \"b\": None, \"c\": [1, 2.5]}")
    }

    // MARK: Sessions and usage

    @Test func signInCodesWorkOnceAndSessionsEnd() async {
        let alice = Caller(uid: 1, gid: 1, login: "alice", groups: ["physics"])
        let groups = LockedBox(["physics"])
        let sessions = WebSessions(
            codeLifetimeSeconds: 120, sessionLifetimeSeconds: 3600, groupRefreshSeconds: 60, capacity: 3,
            currentCaller: { c in Caller(uid: c.uid, gid: c.gid, login: c.login, groups: groups.value) })
        let t0 = Date(timeIntervalSince1970: 1_000_000)
        let (code, _) = sessions.issueCode(for: alice, next: "/alice/x", now: t0)
        let first = sessions.redeem(code: code, now: t0.addingTimeInterval(1))
        #expect(first?.next == "/alice/x")
        #expect(sessions.redeem(code: code, now: t0.addingTimeInterval(2)) == nil, "a code works once")
        let late = sessions.issueCode(for: alice, next: "/", now: t0)
        #expect(sessions.redeem(code: late.code, now: t0.addingTimeInterval(121)) == nil, "an expired code does not work")
        let session = first!.session
        #expect(await sessions.caller(session: session, now: t0.addingTimeInterval(10))?.login == "alice")
        // Leaving a group takes effect within the refresh bound.
        groups.value = []
        #expect(await sessions.caller(session: session, now: t0.addingTimeInterval(30))?.groups == ["physics"])
        #expect(await sessions.caller(session: session, now: t0.addingTimeInterval(70))?.groups == [])
        #expect(await sessions.caller(session: session, now: t0.addingTimeInterval(3700)) == nil, "sessions expire")
        let (c2, _) = sessions.issueCode(for: alice, next: "/", now: t0)
        let s2 = sessions.redeem(code: c2, now: t0)!.session
        #expect(sessions.revokeAll(login: "alice") == 1)
        #expect(await sessions.caller(session: s2, now: t0) == nil)
        #expect(await sessions.caller(session: "forged", now: t0) == nil)
        // Bounded: many codes keep at most `capacity`.
        for _ in 0..<10 { _ = sessions.issueCode(for: alice, next: "/", now: t0) }
    }

    @Test func usageKeepsAMedianOverABoundedWindow() {
        let usage = ServableUsage(samples: 4, versions: 2)
        usage.record(digest: "a", latencies: [1, 2, 3, 100, 100, 100])
        let a = usage.summary(digest: "a")
        #expect(a?.served == 6)
        #expect(a?.medianSeconds == 100, "the window holds the last 4: 3, 100, 100, 100")
        usage.record(digest: "b", latencies: [1], at: Date(timeIntervalSince1970: 2))
        usage.record(digest: "c", latencies: [1], at: Date(timeIntervalSince1970: 3))
        #expect(usage.summary(digest: "b") == nil || usage.summary(digest: "a") == nil, "at most two versions are kept")
        #expect(usage.summary(digest: "nothing") == nil)
    }

    // MARK: Routes

    struct Page {
        var status: HTTPResponse.Status
        var headers: HTTPFields
        var body: String
    }

    static func get(_ client: Client, _ uri: String, cookie: String? = nil, method: HTTPRequest.Method = .get) async throws -> Page {
        var headers: HTTPFields = [:]
        if let cookie { headers[.cookie] = cookie }
        return try await client.inner.execute(uri: uri, method: method, headers: headers, body: nil) { response in
            Page(status: response.status, headers: response.headers, body: String(buffer: response.body))
        }
    }

    /// Login CSRF (found by the red team): a page elsewhere that sends the browser to bob's link
    /// must not sign the visitor in as bob. A cross-site arrival shows whom the link is for and a
    /// button that posts from this origin; a cross-site post is refused.
    @Test func aSignInLinkThatAnotherSiteSendsOnlyAsks() async throws {
        let harness = try await ServiceHarness()
        try await harness.withClient { (client: Client) async throws in
            let link = try await client.send(.post, "/v1/web/links", as: TestUsers.bob)
            let url = try #require(link.json["url"]?.stringValue)
            let path = String(url[try #require(url.range(of: "/-/signin")?.lowerBound)...])
            let code = String(path.dropFirst("/-/signin?code=".count))
            func request(_ method: HTTPRequest.Method, _ uri: String, site: String?, body: String? = nil) async throws -> Page {
                var headers: HTTPFields = [:]
                if let site { headers[HTTPField.Name("Sec-Fetch-Site")!] = site }
                if body != nil { headers[.contentType] = "application/x-www-form-urlencoded" }
                return try await client.inner.execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
                {
                    Page(status: $0.status, headers: $0.headers, body: String(buffer: $0.body))
                }
            }
            let asked = try await request(.get, path, site: "cross-site")
            #expect(asked.status == .ok)
            #expect(asked.headers[.setCookie] == nil, "no session from a cross-site arrival")
            #expect(asked.body.contains("Sign in as bob?"))
            #expect(asked.body.contains("method=\"post\""))
            #expect(try await request(.post, "/-/signin", site: "cross-site", body: "code=" + code).status == .forbidden)
            let confirmed = try await request(.post, "/-/signin", site: "same-origin", body: "code=" + code)
            #expect(confirmed.status == .seeOther)
            #expect(confirmed.headers[.setCookie]?.hasPrefix("dlhub_session=") == true)
            #expect(try await request(.post, "/-/signin", site: "same-origin", body: "code=" + code).status == .unauthorized, "spent")
        }
    }

    @Test func pagesShowWhatTheAPIShowsAndASignInLinkShowsMore() async throws {
        let harness = try await ServiceHarness()
        try await harness.withClient { (client: Client) async throws in
            let hostileTitle = "Flowers \"><script>window.__dlhub_pwned=1</script>"
            var pub = ServableFixtures.sklearnDocument(name: "iris", title: hostileTitle, domains: ["biology"])
            pub = pub.setting(
                ["datacite", "creators"],
                to: [
                    [
                        "creatorName": "Fisher, Ronald", "givenName": "Ronald", "familyName": "Fisher",
                        "nameIdentifiers": [["nameIdentifier": "https://orcid.org/0000-0002-1825-0097", "nameIdentifierScheme": "ORCID"]],
                    ]
                ])
            #expect(try await client.publish(pub, as: TestUsers.alice).status == .created)
            let secret = ServableFixtures.sklearnDocument(name: "secret", title: "Quark gluon tagger", visibleTo: [], domains: ["physics"])
            #expect(try await client.publish(secret, as: TestUsers.alice).status == .created)
            let group = ServableFixtures.sklearnDocument(name: "shared", title: "Group tagger", visibleTo: ["group:physics"])
            #expect(try await client.publish(group, as: TestUsers.alice).status == .created)

            // Anonymous: the public one only, escaped, with the security headers.
            let home = try await Self.get(client, "/")
            #expect(home.status == .ok)
            #expect(home.headers[.contentType] == "text/html; charset=utf-8")
            #expect(home.headers[.contentSecurityPolicy]?.contains("script-src 'self'") == true)
            #expect(home.headers[HTTPField.Name("X-Content-Type-Options")!] == "nosniff")
            #expect(home.headers[.cacheControl] == "no-store")
            #expect(home.body.contains("Flowers &quot;&gt;&lt;script&gt;") || home.body.contains("Flowers \"&gt;&lt;script&gt;"))
            #expect(!home.body.contains("<script>window"))
            #expect(!home.body.contains("Quark"), "a private servable is not listed")
            #expect(!home.body.contains("Group tagger"))
            let page = try await Self.get(client, "/alice/iris")
            #expect(page.status == .ok)
            #expect(page.body.contains("https://orcid.org/0000-0002-1825-0097"))
            #expect(
                page.body.contains("dlhub run alice/iris --input '[[0.0,0.0,0.0,0.0]]'")
                    || page.body.contains("dlhub run alice/iris --input"))
            #expect(page.body.contains("<meta name=\"citation_title\""))
            #expect(page.body.contains("application/ld+json"))
            // The same 404 for a private servable as for none.
            let hidden = try await Self.get(client, "/alice/secret")
            let none = try await Self.get(client, "/alice/nosuch")
            #expect(hidden.status == .notFound)
            #expect(none.status == .notFound)
            #expect(
                hidden.body.replacingOccurrences(of: "alice/secret", with: "X")
                    == none.body.replacingOccurrences(of: "alice/nosuch", with: "X"))
            #expect(!hidden.body.contains("Quark"))
            let digest = try await client.send(.get, "/v1/servables/alice/secret", as: TestUsers.alice).json["digest"]?.stringValue ?? ""
            #expect(try await Self.get(client, "/\(digest)").status == .notFound)
            #expect(try await Self.get(client, "/alice/secret@1/citation?format=bibtex").status == .notFound)
            // The API still wants credentials, however its path is spelled: the middleware lets
            // every path outside /v1/ through to the pages, and each API handler needs a caller.
            for path in ["/v1/whoami", "/V1/whoami", "/%761/whoami", "/v1%2Fwhoami", "//v1/whoami", "/v1//whoami", "/./v1/whoami"] {
                let reply = try await client.send(.get, path, as: nil)
                #expect(reply.status != .ok && !"\(reply.json)".contains("\"login\""), "\(path): \(reply.status)")
            }

            // A one-time link signs alice in; the cookie shows her private servable.
            let link = try await client.send(.post, "/v1/web/links", as: TestUsers.alice, body: Array(#"{"next": "/alice/secret"}"#.utf8))
            #expect(link.status == .created)
            let url = try #require(link.json["url"]?.stringValue)
            let start = try #require(url.range(of: "/-/signin")?.lowerBound)
            let path = String(url[start...])
            let signin = try await Self.get(client, path)
            #expect(signin.status == .seeOther)
            #expect(signin.headers[.location] == "../alice/secret")
            let setCookie = try #require(signin.headers[.setCookie])
            #expect(setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Strict") && setCookie.contains("Path=/"))
            let cookie = String(setCookie.prefix { $0 != ";" })
            #expect(try await Self.get(client, path).status == .unauthorized, "a link works once")
            // Two cookies of the name (one planted): the valid one still counts.
            #expect(try await Self.get(client, "/alice/secret", cookie: "dlhub_session=planted; " + cookie).status == .ok)
            let seen = try await Self.get(client, "/alice/secret", cookie: cookie)
            #expect(seen.status == .ok)
            #expect(seen.body.contains("Quark gluon tagger"))
            #expect(seen.body.contains("Signed in as alice"))
            #expect(try await Self.get(client, "/?q=quark", cookie: cookie).body.contains("Quark gluon tagger"))
            #expect(try await Self.get(client, "/alice/secret@1/citation?format=bibtex", cookie: cookie).status == .ok)
            // bob's link does not show alice's private servable; a forged cookie is anonymous.
            #expect(try await Self.get(client, "/alice/secret", cookie: "dlhub_session=forged").status == .notFound)
            let bad = try await client.send(.post, "/v1/web/links", as: TestUsers.bob, body: Array(#"{"next": "//evil.example"}"#.utf8))
            #expect(bad.status == .badRequest)
            // Revoked everywhere: the cookie no longer works.
            let revoked = try await client.send(.delete, "/v1/web/sessions", as: TestUsers.alice)
            #expect(revoked.json["sessions_ended"] == 1)
            #expect(try await Self.get(client, "/alice/secret", cookie: cookie).status == .notFound)
        }
    }
}
