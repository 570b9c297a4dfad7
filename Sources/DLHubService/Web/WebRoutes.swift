import DLHubCore
import Foundation
import HTTPTypes
import Hummingbird

/// The web catalogue: server-rendered pages beside the API, read-only, with exactly the API's
/// visibility rules. Anonymous visitors see public servables; a session cookie from a
/// `dlhub open` link shows a user what they may see. See docs/web.md.
///
/// Routes: `/` (search), `/<owner>/<name>[@N]`, `/sha256:<digest>`, `/<owner>/<name>@N/citation`,
/// `/-/style.css`, `/-/copy.js`, `/-/signin`, `/-/signout`; and in the API (authenticated as any
/// API call) `POST /v1/web/links` and `DELETE /v1/web/sessions`.
struct WebRoutes: Sendable {
    let catalog: ServableCatalog
    let environments: EnvironmentStore
    let usage: ServableUsage
    let sessions: WebSessions
    let serviceID: String
    let advertisedURL: LockedBox<String>
    /// Cookies get `Secure` when the service speaks TLS.
    let tls: Bool
    /// The cookie's `Path`: `public_url`'s path, else `/`.
    let cookiePath: String

    /// Rendered model cards by digest: a version's card never changes, and rendering a 64 KiB
    /// card took 200 ms (78 pages a second against 2,600 for a short one).
    let cards = ModelCard.Cache()

    static let cookieName = "dlhub_session"
    /// The anonymous visitor: no login and no group, so `AccessPolicy` shows only public servables.
    static let anonymous = Caller(uid: UInt32.max, gid: UInt32.max, login: "", groups: [])

    /// Security headers on every page: a strict CSP (no inline script or style, nothing from
    /// elsewhere, no framing), no sniffing, no referrer (a sign-in link's code never leaves in
    /// one), and no caching of pages that depend on who asks.
    static let securityHeaders: [(HTTPField.Name, String)] = [
        (
            .contentSecurityPolicy,
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        ),
        (HTTPField.Name("X-Content-Type-Options")!, "nosniff"),
        (HTTPField.Name("Referrer-Policy")!, "no-referrer"),
        (HTTPField.Name("X-Frame-Options")!, "DENY"),
        (HTTPField.Name("Cross-Origin-Opener-Policy")!, "same-origin"),
        (HTTPField.Name("Cross-Origin-Resource-Policy")!, "same-origin"),
        (HTTPField.Name("Permissions-Policy")!, "camera=(), microphone=(), geolocation=()"),
    ]

    func register(on router: Router<APIRequestContext>) {
        router.get("/") { request, _ in
            await page(request, root: "./") { context in try await search(request, context: context) }
        }
        // One segment: a digest (`sha256:...`). Named `owner` as the longer routes' first segment is.
        router.get("/{owner}") { request, route in
            await page(request, root: "./") { context in
                let raw = try APIRoutes.parameter("owner", route)
                guard raw.hasPrefix("sha256:"), let reference = try? ServableReference(parsing: raw) else {
                    return (WebPages.notFound(raw, context: context), .notFound)
                }
                return try await servable(reference, display: raw, context: context)
            }
        }
        router.get("/{owner}/{name}") { request, route in
            await page(request, root: "../") { context in
                let raw = "\(try APIRoutes.parameter("owner", route))/\(try APIRoutes.parameter("name", route))"
                guard let reference = try? ServableReference(parsing: raw) else {
                    return (WebPages.notFound(raw, context: context), .notFound)
                }
                return try await servable(reference, display: raw, context: context)
            }
        }
        router.get("/{owner}/{name}/citation") { request, route in
            let caller = await caller(request)
            do {
                let reference = try APIRoutes.reference(route)
                let record = try await catalog.resolve(reference, caller: caller)
                let format = Citation.Format(rawValue: request.uri.queryParameters.get("format") ?? "text") ?? .text
                let (type, ext): (String, String)
                switch format {
                case .bibtex: (type, ext) = ("application/x-bibtex; charset=utf-8", "bib")
                case .datacite: (type, ext) = ("application/vnd.datacite.datacite+json", "datacite.json")
                case .cff: (type, ext) = ("application/x-yaml; charset=utf-8", "cff")
                case .text: (type, ext) = ("text/plain; charset=utf-8", "txt")
                }
                var response = Response(
                    status: .ok, headers: [.contentType: type],
                    body: .init(byteBuffer: ByteBuffer(string: citation(record).render(format))))
                let file = "\(record.owner)-\(record.name)-\(record.version).\(ext)"
                response.headers[.contentDisposition] = "attachment; filename=\"\(file)\""
                Self.secure(&response, private: true)
                return response
            } catch {
                let context = PageContext(root: "../../", caller: nil, serviceURL: advertisedURL.value, serviceID: serviceID)
                return html(
                    WebPages.notFound("\(route.parameters.get("owner") ?? "")/\(route.parameters.get("name") ?? "")", context: context),
                    .notFound)
            }
        }
        router.get("/-/style.css") { _, _ in asset(WebAssets.stylesheet, type: "text/css; charset=utf-8") }
        router.get("/-/copy.js") { _, _ in asset(WebAssets.copyScript, type: "text/javascript; charset=utf-8") }
        // A sign-in link followed from a terminal (or typed) signs in at once. One that another
        // site sent the browser to (`Sec-Fetch-Site: cross-site`) only shows whom it would sign in
        // as, with a button: otherwise any page could swap a visitor's session for its author's
        // (login CSRF, found by the red team). The button posts from this page, same-origin.
        router.get("/-/signin") { request, _ in
            let code = request.uri.queryParameters.get("code") ?? ""
            if Self.crossSite(request) {
                guard let login = sessions.peek(code: code) else { return signinFailed() }
                return html(WebPages.confirmSignin(code: code, login: login, context: signinContext), .ok)
            }
            return signin(code: code)
        }
        router.post("/-/signin") { request, _ in
            guard !Self.crossSite(request) else {
                return html(
                    WebPages.message("Not signed in", "Sign in from the link dlhub open printed.", context: signinContext), .forbidden)
            }
            let body = try await request.body.collect(upTo: 1024)
            let form = String(buffer: body)
            let code = form.split(separator: "&").first { $0.hasPrefix("code=") }.map { String($0.dropFirst(5)) } ?? ""
            return signin(code: code.removingPercentEncoding ?? code)
        }
        router.post("/-/signout") { request, _ in
            // A cross-site form cannot carry the cookie (SameSite=Strict); the fetch metadata a
            // browser sends is checked as well.
            if let site = request.headers[HTTPField.Name("Sec-Fetch-Site")!], site != "same-origin", site != "none" {
                return html(
                    WebPages.message(
                        "Not signed out", "Sign out from the catalogue's own page.",
                        context: PageContext(root: "../", caller: nil, serviceURL: advertisedURL.value, serviceID: serviceID)),
                    .forbidden)
            }
            if let session = Self.sessionCookie(request.headers[.cookie]) { sessions.end(session: session) }
            var response = Response(status: .seeOther)
            response.headers[.location] = "../"
            response.headers[.setCookie] = cookie("", maxAge: 0)
            Self.secure(&response, private: true)
            return response
        }
        router.post("/v1/web/links") { request, context in
            let caller = try context.requireCaller()
            let body = try await request.body.collect(upTo: 4096)
            var next = "/"
            if body.readableBytes > 0 {
                guard let doc = try? JSONValue.parse(Array(buffer: body)) else {
                    throw DLHubError(.badRequest, "send {\"next\": \"/owner/name\"} or no body")
                }
                if let wanted = doc["next"]?.stringValue {
                    guard let safe = Self.safeNext(wanted) else {
                        throw DLHubError(.badRequest, "next is a catalogue path such as /alice/iris, not '\(wanted.prefix(80))'")
                    }
                    next = safe
                }
            }
            let (code, expires) = sessions.issueCode(for: caller, next: next)
            let url = advertisedURL.value + "/-/signin?code=" + code
            return Response.json(
                [
                    "url": .string(url), "expires_at": .int(Int64(expires.timeIntervalSince1970)),
                    "next": .string(advertisedURL.value + next), "login": .string(caller.login),
                ], status: .created)
        }
        router.delete("/v1/web/sessions") { _, context in
            let caller = try context.requireCaller()
            let ended = sessions.revokeAll(login: caller.login)
            return Response.json(["login": .string(caller.login), "sessions_ended": .int(Int64(ended))])
        }
    }

    // MARK: Signing in

    var signinContext: PageContext { PageContext(root: "../", caller: nil, serviceURL: advertisedURL.value, serviceID: serviceID) }

    /// Whether another site sent this request (fetch metadata; absent from older browsers and curl).
    static func crossSite(_ request: Request) -> Bool {
        guard let site = request.headers[HTTPField.Name("Sec-Fetch-Site")!] else { return false }
        return site != "same-origin" && site != "none"
    }

    func signinFailed() -> Response {
        html(
            WebPages.message(
                "This sign-in link does not work", "It was used already or is older than two minutes. Run dlhub open again for a new one.",
                context: signinContext), .unauthorized)
    }

    /// Spends the code: a session cookie, and on to the page the link named.
    func signin(code: String) -> Response {
        guard code.count <= 100, let (session, _, next) = sessions.redeem(code: code) else { return signinFailed() }
        var response = Response(status: .seeOther)
        // Relative to /-/signin, so that it stays right behind a proxy's prefix.
        response.headers[.location] = "../" + next.dropFirst()
        response.headers[.setCookie] = cookie(session, maxAge: Int(sessions.sessionLifetimeSeconds))
        Self.secure(&response, private: true)
        return response
    }

    // MARK: Pages

    func search(_ request: Request, context: PageContext) async throws -> (String, HTTPResponse.Status) {
        var parameters: [String: String] = [:]
        for (k, v) in request.uri.queryParameters where parameters[String(k)] == nil { parameters[String(k)] = String(v) }
        let query = WebPages.SearchQuery(parameters: parameters)
        let caller = context.caller ?? Self.anonymous
        let all = try await catalog.search(
            query: query.text.isEmpty ? nil : query.text, owner: query.owner.isEmpty ? nil : query.owner,
            domain: query.domain.isEmpty ? nil : query.domain, author: query.author.isEmpty ? nil : query.author, limit: 10_000,
            caller: caller
        ).filter(query.keeps)
        var domains: [String: Int] = [:]
        var types: [String: Int] = [:]
        for e in all {
            for d in Set(e.domains) { domains[d, default: 0] += 1 }
            types[e.loader, default: 0] += 1
        }
        func ranked(_ counts: [String: Int]) -> [(String, Int)] {
            counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { ($0.key, $0.value) }
        }
        let start = (query.page - 1) * WebPages.SearchQuery.pageSize
        let shown = start < all.count ? Array(all[start..<min(all.count, start + WebPages.SearchQuery.pageSize)]) : []
        return (
            WebPages.search(query, results: shown, total: all.count, facets: (ranked(domains), ranked(types)), context: context), .ok
        )
    }

    func servable(_ reference: ServableReference, display: String, context: PageContext) async throws -> (String, HTTPResponse.Status) {
        let caller = context.caller ?? Self.anonymous
        guard let record = try await visible(reference, caller: caller) else {
            return (WebPages.notFound(display, context: context), .notFound)
        }
        // A digest page lives at the root; its links are made from there.
        let versions = try await catalog.visibleVersions(owner: record.owner, name: record.name, caller: caller)
        let pinned: Bool
        if case .latest = reference { pinned = false } else { pinned = true }
        let page = WebPages.ServablePage(
            record: record, versions: versions, environment: await environments.describe(record.metadata.environment),
            modelCard: cards.rendered(digest: record.digest) { APIRoutes.modelCard(record.directory) }, citation: citation(record),
            usage: usage.summary(digest: record.digest),
            landingURL: landingURL(record), pinned: pinned)
        return (WebPages.servable(page, context: context), .ok)
    }

    // MARK: Plumbing

    /// The version, or nil when the caller may not see it (the same for one that does not exist).
    func visible(_ reference: ServableReference, caller: Caller) async throws(DLHubError) -> RegistryRecord? {
        do {
            return try await catalog.resolve(reference, caller: caller)
        } catch {
            guard error.code == .notFound else { throw error }
            return nil
        }
    }

    /// The page a DOI for this version resolves to.
    func landingURL(_ record: RegistryRecord) -> String { Self.landingURL(record, serviceURL: advertisedURL.value) }

    static func landingURL(_ record: RegistryRecord, serviceURL: String) -> String {
        serviceURL + "/" + SafeURL.percentEncoded(record.owner) + "/" + SafeURL.percentEncoded(record.name) + "@\(record.version)"
    }

    func citation(_ record: RegistryRecord) -> Citation {
        Citation(metadata: record.metadata.document, digest: record.digest, url: landingURL(record), siteDOI: record.siteDOI)
    }

    /// The session's caller, or the anonymous visitor.
    func caller(_ request: Request) async -> Caller {
        // Every cookie of that name, in order: one planted for the host must not hide the real one.
        for session in Self.sessionCookies(request.headers[.cookie]).prefix(4) {
            if let caller = await sessions.caller(session: session) { return caller }
        }
        return Self.anonymous
    }

    /// Renders a page for whoever asks; an error is an HTML page too, never the API's JSON.
    func page(
        _ request: Request, root: String, _ body: (PageContext) async throws -> (String, HTTPResponse.Status)
    ) async -> Response {
        let caller = await caller(request)
        let context = PageContext(
            root: root, caller: caller.login.isEmpty ? nil : caller, serviceURL: advertisedURL.value, serviceID: serviceID)
        do {
            let (text, status) = try await body(context)
            return html(text, status)
        } catch let error as DLHubError {
            let status = ErrorMiddleware.status(for: error.code)
            return html(WebPages.message("Something went wrong", error.message, context: context), status)
        } catch {
            return html(
                WebPages.message(
                    "Something went wrong", "The service failed to show this page; the site's dlhubd log has the details.", context: context
                ),
                .internalServerError)
        }
    }

    func html(_ text: String, _ status: HTTPResponse.Status) -> Response {
        var response = Response(
            status: status, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text)))
        Self.secure(&response, private: true)
        return response
    }

    func asset(_ text: String, type: String) -> Response {
        var response = Response(status: .ok, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(string: text)))
        Self.secure(&response, private: false)
        response.headers[.cacheControl] = "public, max-age=3600"
        return response
    }

    static func secure(_ response: inout Response, private isPrivate: Bool) {
        for (name, value) in securityHeaders { response.headers[name] = value }
        if isPrivate {
            response.headers[.cacheControl] = "no-store"
            response.headers[.vary] = "Cookie"
        }
    }

    func cookie(_ value: String, maxAge: Int) -> String {
        "\(Self.cookieName)=\(value); Path=\(cookiePath); Max-Age=\(maxAge); HttpOnly; SameSite=Strict" + (tls ? "; Secure" : "")
    }

    static func sessionCookies(_ header: String?) -> [String] {
        guard let header else { return [] }
        return header.split(separator: ";").compactMap { part in
            let pair = part.trimmingCharacters(in: .whitespaces)
            guard pair.hasPrefix(cookieName + "=") else { return nil }
            let value = String(pair.dropFirst(cookieName.count + 1))
            return value.isEmpty || value.count > 100 ? nil : value
        }
    }

    static func sessionCookie(_ header: String?) -> String? { sessionCookies(header).first }

    /// Where a sign-in link may send its user: a catalogue path (`/`, `/alice/iris@2`,
    /// `/?q=x`), never another site (`//host`, `https://...`) or a scheme.
    static func safeNext(_ raw: String) -> String? {
        guard raw.hasPrefix("/"), raw.utf8.count <= 512,
            raw.unicodeScalars.allSatisfy({
                $0.value > 0x20 && $0.value < 0x7F && $0 != "\\" && $0 != "\"" && $0 != "'" && $0 != "<" && $0 != ">"
            })
        else { return nil }
        // The path may not climb (`.`, `..`, also percent-encoded), hold an empty segment (`//`,
        // which a browser reads as another host once `../` is put in front) or an encoded slash:
        // behind a proxy's prefix, those would leave the catalogue (found by the red team).
        let path = raw.prefix { $0 != "?" && $0 != "#" }
        let lowered = path.lowercased()
        guard !lowered.contains("%2f"), !lowered.contains("%5c"), !lowered.contains("%2e") else { return nil }
        let segments = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        guard !segments.dropLast().contains(where: \.isEmpty), !segments.contains(where: { $0 == "." || $0 == ".." }) else { return nil }
        return raw
    }

    /// `public_url`'s path (`/dlhub` for `https://host/dlhub`), else `/`.
    static func cookiePath(publicURL: String?) -> String {
        guard let publicURL, let url = URL(string: publicURL), !url.path.isEmpty else { return "/" }
        let path = url.path
        return SafeURL.plainCharacters(path) && !path.contains(";") ? path : "/"
    }
}
