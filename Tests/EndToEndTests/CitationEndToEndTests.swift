import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// Citing a servable: BibTeX a parser reads, DataCite 4 JSON that DataCite's schema accepts, a
/// DOI attached by the owner without changing the digest, and a digest anyone can recompute.
@Suite struct CitationEndToEndTests {
    init() throws { try TestUsers.require() }

    static var tools: String { (ProcessInfo.processInfo.environment["DLHUB_TOOLS_ENV"] ?? "/opt/dlhub-dev/tools") + "/bin/python" }

    /// A servable with a model card, a license, a related paper and awkward characters in its title.
    static func citable(in parent: String) throws -> String {
        let dir = try ServingFixtures.pythonFunctions(
            in: parent, name: "spectra", function: "slow", input: ["type": "integer"], output: ["type": "integer"])
        var doc = try JSONValue.parse(Array(FileManager.default.contents(atPath: dir + "/servable.json")!))
        doc = doc.setting(["datacite", "titles"], to: [["title": "Spectra {fast} & 100% \"robust\" — Müller's model"]])
        doc = doc.setting(
            ["datacite", "creators"],
            to: [
                ["creatorName": "Müller, Anna", "givenName": "Anna", "familyName": "Müller", "affiliations": ["Argonne"]],
                ["creatorName": "Chard, Ryan", "givenName": "Ryan", "familyName": "Chard"],
            ])
        doc = doc.setting(["datacite", "rightsList"], to: [["rights": "CC-BY-4.0"]])
        doc = doc.setting(
            ["datacite", "relatedIdentifiers"],
            to: [["relatedIdentifier": "10.1016/j.jpdc.2020.08.006", "relatedIdentifierType": "DOI", "relationType": "IsDescribedBy"]])
        doc = doc.setting(["datacite", "descriptions"], to: [["description": "Doubles numbers, slowly.", "descriptionType": "Abstract"]])
        doc = doc.setting(["datacite", "publicationYear"], to: "2026")
        _ = FileManager.default.createFile(atPath: dir + "/servable.json", contents: Data(doc.encoded(pretty: true)))
        try "# Spectra\n\nA model card: what it was trained on, and its limits.\n".write(
            toFile: dir + "/README.md", atomically: true, encoding: .utf8)
        return dir
    }

    @Test func citationsParseAndValidateAndTheDigestIsRecomputedAndChecked() async throws {
        let service = try LiveService()
        defer { service.stop() }
        let work = try TemporaryDirectory("dlhub-cite")
        defer { work.remove() }
        let dir = try Self.citable(in: work.path)
        _ = try Subprocess.run("/bin/chmod", ["-R", "a+rX", work.path])
        let cli = try CLI(service: service)
        let published = try cli.run(as: TestUsers.alice, ["publish", dir])
        #expect(published.status == 0, "\(published.stderr)")
        let alice = APIClient(url: service.url)
        try await alice.login(as: TestUsers.alice)
        let described = try await alice.send("GET", "/v1/servables/alice/spectra@1").json
        let digest = try #require(described["digest"]?.stringValue)
        #expect(described["model_card"]?.stringValue?.contains("A model card") == true)
        #expect(described["license"] == "CC-BY-4.0")
        #expect(described["related_identifiers"]?.arrayValue?.first?["identifier"] == "10.1016/j.jpdc.2020.08.006")

        // The owner attaches the DOI the site minted; nobody else can; the digest stays.
        let bob = try cli.run(as: TestUsers.bob, ["doi", "alice/spectra@1", "10.5555/dlhub.spectra.1"])
        #expect(bob.status != 0)
        #expect(try cli.run(as: TestUsers.alice, ["doi", "alice/spectra@1", "not-a-doi"]).stderr.contains("is not a DOI"))
        let attached = try cli.run(as: TestUsers.alice, ["doi", "alice/spectra@1", "https://doi.org/10.5555/dlhub.spectra.1"])
        #expect(attached.status == 0, "\(attached.stderr)")
        #expect(attached.stdout.contains("its digest is still \(digest)"), "\(attached.stdout)")
        let after = try await alice.send("GET", "/v1/servables/alice/spectra@1").json
        #expect(after["digest"]?.stringValue == digest)
        #expect(after["doi"] == "10.5555/dlhub.spectra.1")
        let byDOI = try cli.run(as: TestUsers.bob, ["search", "--doi", "10.5555/DLHUB.SPECTRA.1", "--json"])
        #expect(try JSONValue.parse(byDOI.stdout)["servables"]?.arrayValue?.first?["id"] == "alice/spectra", "\(byDOI.stdout)")
        let byPaper = try cli.run(as: TestUsers.bob, ["search", "--doi", "10.1016/j.jpdc.2020.08.006", "--json"])
        #expect(try JSONValue.parse(byPaper.stdout)["servables"]?.arrayValue?.count == 1)
        let byAuthor = try cli.run(as: TestUsers.bob, ["search", "--author", "müller", "--json"])
        #expect(try JSONValue.parse(byAuthor.stdout)["servables"]?.arrayValue?.count == 1, "\(byAuthor.stdout)")
        let nobody = try cli.run(as: TestUsers.bob, ["search", "--author", "Nobody", "--json"])
        #expect(try JSONValue.parse(nobody.stdout)["servables"]?.arrayValue?.isEmpty == true)

        // BibTeX that a parser reads back: title, authors, version, digest, DOI.
        let bibtex = try cli.run(as: TestUsers.bob, ["cite", "alice/spectra@1", "--format", "bibtex"])
        #expect(bibtex.status == 0, "\(bibtex.stderr)")
        let parsed = try Subprocess.run(
            Self.tools,
            [
                "-c",
                """
                import json, sys, bibtexparser
                from bibtexparser.bparser import BibTexParser
                from bibtexparser.customization import convert_to_unicode
                parser = BibTexParser(common_strings=True)
                parser.customization = convert_to_unicode
                db = bibtexparser.loads(sys.stdin.read(), parser)
                print(json.dumps(db.entries))
                """,
            ], input: Data(bibtex.stdout.utf8))
        #expect(parsed.status == 0, "\(parsed.stderr)")
        let entry = try #require(try JSONValue.parse(parsed.stdout).arrayValue?.first, "\(bibtex.stdout)")
        #expect(entry["ENTRYTYPE"] == "misc")
        #expect(entry["ID"] == "Muller2026spectrav1")
        #expect(entry["title"]?.stringValue?.contains("Spectra") == true && entry["title"]?.stringValue?.contains("Müller") == true)
        #expect(entry["author"] == "Müller, Anna and Chard, Ryan")
        #expect(entry["version"] == "1")
        #expect(entry["year"] == "2026")
        #expect(entry["doi"] == "10.5555/dlhub.spectra.1")
        #expect(entry["note"]?.stringValue?.contains(digest) == true)

        // DataCite 4 JSON that DataCite's schema (4.3) accepts.
        let datacite = try cli.run(as: TestUsers.bob, ["cite", "alice/spectra@1", "--format", "datacite"])
        #expect(datacite.status == 0, "\(datacite.stderr)")
        let valid = try Subprocess.run(
            Self.tools,
            ["-c", "import json, sys\nfrom datacite import schema43\nschema43.validator.validate(json.load(sys.stdin))\nprint('valid')"],
            input: Data(datacite.stdout.utf8))
        #expect(valid.stdout == "valid\n", "\(valid.stderr)\n\(datacite.stdout)")
        let dc = try JSONValue.parse(datacite.stdout)
        #expect(
            dc["identifiers"]?.arrayValue?.contains { $0["identifier"] == "10.5555/dlhub.spectra.1" && $0["identifierType"] == "DOI" }
                == true)
        #expect(dc["identifiers"]?.arrayValue?.contains { $0["identifier"]?.stringValue == digest } == true)

        // CFF: YAML with the fields CFF 1.2 requires.
        let cff = try cli.run(as: TestUsers.bob, ["cite", "alice/spectra@1", "--format", "cff"])
        let yaml = try Subprocess.run(
            Self.tools, ["-c", "import json, sys, yaml\nprint(json.dumps(yaml.safe_load(sys.stdin)))"], input: Data(cff.stdout.utf8))
        let c = try JSONValue.parse(yaml.stdout)
        #expect(c["cff-version"] == "1.2.0" && c["doi"] == "10.5555/dlhub.spectra.1", "\(cff.stdout)")
        #expect(c["authors"]?.arrayValue?.first?["family-names"] == "Müller")
        #expect(c["title"]?.stringValue?.contains("\"robust\"") == true)

        // The digest: the service recomputes it; so does the Python reference implementation,
        // from the registry's files, as a third party would from a copy.
        let verified = try cli.run(as: TestUsers.bob, ["verify", "alice/spectra@1"])
        #expect(verified.status == 0, "\(verified.stderr)")
        #expect(verified.stdout.contains("ok"))
        let versionDir = service.registry + "/servables/alice/spectra/1"
        let reference = try Subprocess.run(
            "/usr/bin/python3", ["-m", "dlhub_slurm.digest", versionDir],
            environment: ["PYTHONPATH": BuiltProducts.packageRoot + "/python", "PATH": "/usr/bin:/bin"])
        #expect(reference.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == digest, "\(reference.stderr)")
        let copy = work.path + "/copy"
        _ = try Subprocess.run("/bin/cp", ["-R", versionDir, copy])
        _ = try Subprocess.run("/bin/chmod", ["-R", "a+rX", copy])
        #expect(try cli.run(as: TestUsers.bob, ["verify", "alice/spectra@1", "--directory", copy]).status == 0)

        // A file changed on disk behind the service's back is detected.
        try "def slow(x, delay=0):\n    return 3 * x\n".write(toFile: versionDir + "/testfns.py", atomically: false, encoding: .utf8)
        let tampered = try cli.run(as: TestUsers.bob, ["verify", "alice/spectra@1"])
        #expect(tampered.status != 0)
        #expect(tampered.stderr.contains("the files no longer match"), "\(tampered.stderr)")
        #expect(try cli.run(as: TestUsers.bob, ["verify", "alice/spectra@1", "--directory", copy]).status == 0, "the copy still matches")
    }

    /// A private servable stays private through the new routes: another user cannot cite it,
    /// verify it, attach a DOI to it, or find it by its DOI; they learn nothing about it.
    @Test func anotherUserCannotCiteVerifyOrFindAPrivateServable() async throws {
        let service = try LiveService()
        defer { service.stop() }
        let work = try TemporaryDirectory("dlhub-cite-private")
        defer { work.remove() }
        let dir = try Self.citable(in: work.path)
        var doc = try JSONValue.parse(Array(FileManager.default.contents(atPath: dir + "/servable.json")!))
        doc = doc.setting(["dlhub", "visible_to"], to: ["user:alice"])
        _ = FileManager.default.createFile(atPath: dir + "/servable.json", contents: Data(doc.encoded(pretty: true)))
        _ = try Subprocess.run("/bin/chmod", ["-R", "a+rX", work.path])
        let cli = try CLI(service: service)
        #expect(try cli.run(as: TestUsers.alice, ["publish", dir]).status == 0)
        #expect(try cli.run(as: TestUsers.alice, ["doi", "alice/spectra@1", "10.5555/private.1"]).status == 0)
        let bob = APIClient(url: service.url)
        try await bob.login(as: TestUsers.bob)
        for path in ["/v1/servables/alice/spectra@1/citation?format=bibtex", "/v1/servables/alice/spectra@1/verify"] {
            let reply = try await bob.send("GET", path)
            #expect(reply.status == 404, "\(path): \(reply.json)")
        }
        #expect(try await bob.send("PUT", "/v1/servables/alice/spectra@1/doi", json: ["doi": "10.5555/hijack.1"]).status == 404)
        let byDOI = try await bob.send("GET", "/v1/servables?doi=10.5555/private.1")
        #expect(byDOI.json["servables"]?.arrayValue?.isEmpty == true, "\(byDOI.json)")
        // bob's own servable cannot take the DOI either, and the refusal does not say who holds it.
        let bobs = try ServingFixtures.pythonFunctions(
            in: work.path, name: "bobs_model", function: "slow", input: ["type": "integer"], output: ["type": "integer"])
        _ = try Subprocess.run("/bin/chmod", ["-R", "a+rX", work.path])
        #expect(try cli.run(as: TestUsers.bob, ["publish", bobs]).status == 0)
        let clash = try await bob.send("PUT", "/v1/servables/bob/bobs_model@1/doi", json: ["doi": "10.5555/private.1"])
        #expect(clash.status == 409, "\(clash.json)")
        let said = clash.json.encodedString()
        #expect(!said.contains("spectra") && !said.contains("alice"), "the refusal names the private servable: \(said)")
        // alice still sees all of it.
        #expect(try cli.run(as: TestUsers.alice, ["cite", "alice/spectra@1", "--format", "bibtex"]).stdout.contains("10.5555/private.1"))
    }
}
