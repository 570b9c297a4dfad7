import DLHubCore
import Foundation
import Testing

@Suite struct CitationTests {
    static let metadata: JSONValue = [
        "datacite": [
            "titles": [["title": "A {braced} title with 50% & $math$ and a_b"]],
            "creators": [["creatorName": "Fisher, Ronald", "givenName": "Ronald", "familyName": "Fisher"]],
            "identifier": ["identifier": "10.YET/UNASSIGNED", "identifierType": "DOI"],
            "publicationYear": "2025",
        ],
        "dlhub": ["name": "iris", "owner": "alice", "version": 3, "publication_date": "2026-11-30T08:00:00Z", "domains": ["biology"]],
    ]

    @Test func bibtexEscapesWhatTeXWouldReadAsCommands() {
        let c = Citation(metadata: Self.metadata, digest: "sha256:" + String(repeating: "a", count: 64), url: "http://h:1/x", siteDOI: nil)
        let bib = c.bibtex
        #expect(bib.hasPrefix("@misc{Fisher2025irisv3,\n"))
        #expect(bib.contains("title = {A \\{braced\\} title with 50\\% \\& \\$math\\$ and a\\_b}"))
        #expect(bib.contains("author = {Fisher, Ronald}"))
        #expect(!bib.contains("doi ="), "a placeholder DOI is no DOI")
        #expect(bib.filter { $0 == "{" }.count == bib.filter { $0 == "}" }.count)
    }

    @Test func theSitesDOIComesFirstAndPlaceholdersAreDropped() {
        let c = Citation(metadata: Self.metadata, digest: "sha256:x", url: "u", siteDOI: "10.5555/abc")
        #expect(c.dois == ["10.5555/abc"])
        #expect(c.text.contains("https://doi.org/10.5555/abc"))
        #expect(c.datacite["identifiers"]?.arrayValue?.first == ["identifier": "10.5555/abc", "identifierType": "DOI"])
        #expect(c.cff.contains("doi: \"10.5555/abc\""))
    }

    @Test func doiSyntax() {
        #expect(Citation.isDOI("10.1016/j.jpdc.2020.08.006"))
        #expect(!Citation.isDOI("10.YET/UNASSIGNED"))
        #expect(!Citation.isDOI("doi 10.1/x"))
        #expect(!Citation.isDOI("11.1234/x"))
        #expect(!Citation.isDOI("10.12/x"))
    }

    @Test func yearFallsBackToThePublicationDate() {
        let doc = Self.metadata.setting(["datacite", "publicationYear"], to: "")
        #expect(Citation(metadata: doc, digest: "d", url: "u", siteDOI: nil).year == "2026")
    }
}
