import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// The web catalogue in a real browser: headless Chromium driven through chromedriver by
/// Tests/browser/catalogue_check.py, against a live dlhubd on the dev cluster that serves a real
/// request first (so the page has usage to show). What the browser checks is listed in that
/// script; this publishes what it expects and reads its verdict.
///
/// Screenshots go to `DLHUB_SCREENSHOTS` when set (`scripts/screenshots` sets docs/screenshots),
/// else into the test's scratch directory.
@Suite(.serialized) struct WebBrowserTests {
    init() throws { try TestUsers.require() }

    static var tools: String { (ProcessInfo.processInfo.environment["DLHUB_TOOLS_ENV"] ?? "/opt/dlhub-dev/tools") + "/bin/python" }

    @Test func theCatalogueWorksInABrowserAndAHostileModelCardStaysInert() async throws {
        for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver", Self.tools] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw TestSetupError("\(tool) is missing; run `sudo slurm/install-deps` (the README's test command does)")
        }
        let probe = try Subprocess.run(Self.tools, ["-c", "import selenium"])
        guard probe.status == 0 else { throw TestSetupError("selenium is missing from \(Self.tools); run `sudo slurm/install-deps`") }

        let service = try LiveService()
        defer { service.stop() }
        let work = try TemporaryDirectory("dlhub-web")
        defer { work.remove() }
        let cli = try CLI(service: service)

        // alice/spectra: two versions, the first withdrawn, a DOI on the second, an ORCID, a
        // related paper, and a model card full of attacks.
        let dir = try CitationEndToEndTests.citable(in: work.path)
        var doc = try JSONValue.parse(Array(FileManager.default.contents(atPath: dir + "/servable.json")!))
        let orcid = "0000-0002-1825-0097"
        doc = doc.setting(
            ["datacite", "creators"],
            to: [
                [
                    "creatorName": "Müller, Anna", "givenName": "Anna", "familyName": "Müller", "affiliations": ["Argonne"],
                    "nameIdentifiers": [["nameIdentifier": .string("https://orcid.org/" + orcid), "nameIdentifierScheme": "ORCID"]],
                ],
                ["creatorName": "Chard, Ryan", "givenName": "Ryan", "familyName": "Chard"],
            ])
        doc = doc.setting(["dlhub", "domains"], to: ["spectroscopy"])
        _ = FileManager.default.createFile(atPath: dir + "/servable.json", contents: Data(doc.encoded(pretty: true)))
        let card =
            "# Spectra\n\nA model card: what it was trained on, and its limits.\n\n"
            + (HostileMarkdown.benign + HostileMarkdown.fragments).joined(separator: "\n\n")
        try card.write(toFile: dir + "/README.md", atomically: true, encoding: .utf8)
        _ = try Subprocess.run("/bin/chmod", ["-R", "a+rX", work.path])
        for _ in 0..<2 {
            let published = try cli.run(as: TestUsers.alice, ["publish", dir])
            #expect(published.status == 0, "\(published.stderr)")
        }
        let reason = "superseded: wrong units"
        #expect(try cli.run(as: TestUsers.alice, ["withdraw", "alice/spectra@1", "--reason", reason]).status == 0)
        let doi = "10.5555/dlhub.spectra.2"
        let attached = try cli.run(as: TestUsers.alice, ["doi", "alice/spectra@2", doi])
        #expect(attached.status == 0, "\(attached.stderr)")
        #expect(
            attached.stdout.contains("landing page (register it with DataCite as the DOI's URL): \(service.url)/alice/spectra@2"),
            "\(attached.stdout)")

        // A real request, so that the page has usage to show.
        let alice = APIClient(url: service.url)
        try await alice.login(as: TestUsers.alice)
        let ran = try await alice.run("alice/spectra@2", ["input": 21], wait: 300)
        #expect(ran.json["output"]?.intValue == 42, "\(ran.json)")

        // alice's private servable, and 22 of bob's public ones (more than a page).
        let secret = ServableFixtures.sklearnDocument(name: "secret", title: "Quark gluon tagger", visibleTo: [], domains: ["physics"])
            .setting(["servable", "dependencies"], to: [:])
        #expect(try await alice.send("POST", "/v1/servables", body: ServableFixtures.archive(secret)).status == 201)
        let bob = APIClient(url: service.url)
        try await bob.login(as: TestUsers.bob)
        for i in 0..<22 {
            let filler = ServableFixtures.sklearnDocument(
                name: "filler-\(i)", title: "Filler model \(i)", domains: [i % 2 == 0 ? "chemistry" : "materials"]
            ).setting(["servable", "dependencies"], to: [:])
            let reply = try await bob.send("POST", "/v1/servables", body: ServableFixtures.archive(filler))
            #expect(reply.status == 201, "\(reply.json)")
        }

        // `dlhub open` prints the one-time link (and starts no browser with --print).
        let open = try cli.run(as: TestUsers.alice, ["open", "alice/secret", "--print"])
        #expect(open.status == 0, "\(open.stderr)")
        let link = open.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(link.hasPrefix(service.url + "/-/signin?code="), "\(open.stdout)")
        let second = try cli.run(as: TestUsers.alice, ["open", "alice/secret", "--print"])
        let proxiedLink = second.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let bobsLink = try cli.run(as: TestUsers.bob, ["open", "--print"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)

        let expect: JSONValue = [
            "id": "alice/spectra", "version": 2,
            "title": .string(doc["datacite"]?["titles"]?.arrayValue?.first?["title"]?.stringValue ?? ""),
            "query": "spectra", "author_query": "Müller", "orcid": .string(orcid), "authors": ["Müller, Anna", "Chard, Ryan"],
            "doi": .string(doi), "related_doi": "10.1016/j.jpdc.2020.08.006", "domain": "chemistry", "type": "python",
            "withdraw_reason": .string(reason), "card_marker": "A model card: what it was trained on", "private_id": "alice/secret",
            "private_title": "Quark gluon tagger", "private_query": "quark", "public_count": 23,
        ]
        let expectPath = work.file("expect.json")
        _ = FileManager.default.createFile(atPath: expectPath, contents: Data(expect.encoded(pretty: true)))
        let shots = ProcessInfo.processInfo.environment["DLHUB_SCREENSHOTS"] ?? work.file("screenshots")
        let result = try Subprocess.run(
            Self.tools,
            [
                BuiltProducts.packageRoot + "/Tests/browser/catalogue_check.py", "--url", service.url, "--signin", link,
                "--signin-proxied", proxiedLink, "--signin-other", bobsLink, "--screenshots", shots, "--expect", expectPath,
            ], environment: ["PATH": "/usr/bin:/bin", "HOME": work.path, "LANG": "C.UTF-8"])
        print(result.stdout)
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr.suffix(3000))")
        #expect(result.stdout.contains("all checks passed"), "\(result.stdout)")
        #expect(
            FileManager.default.fileExists(atPath: shots + "/search.png") && FileManager.default.fileExists(atPath: shots + "/model.png"))
        #expect(service.process.isRunning)
    }
}
