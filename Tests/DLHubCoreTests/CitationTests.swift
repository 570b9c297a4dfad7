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

    /// The field names of a BibTeX entry, read as BibTeX does: braces counted whether or not a
    /// backslash comes first.
    static func bibtexFields(_ entry: String) -> [String] {
        var fields: [String] = []
        var depth = 0
        var name = ""
        for ch in entry {
            switch ch {
            case "{": depth += 1
            case "}": depth -= 1
            default:
                if depth == 1 {
                    if ch == "=" {
                        fields.append(name.trimmingCharacters(in: .whitespacesAndNewlines.union(CharacterSet(charactersIn: ","))))
                        name = ""
                    } else {
                        name.append(ch)
                    }
                }
            }
            if depth == 1, ch == "}" || ch == "," { name = "" }
        }
        return fields
    }

    /// Found by the red team: a title whose braces do not balance ended its field in BibTeX's
    /// reading and started fields of its own; a title's newlines forged lines in the text form.
    @Test func anUnbalancedTitleStaysOneFieldAndTheTextFormOneLine() {
        let hostile = "X}, note = {INJECTED}, x = {\n@misc{evil, title={evil}}\n"
        let doc = Self.metadata.setting(["datacite", "titles"], to: [["title": .string(hostile)]])
            .setting(["datacite", "creators"], to: [["creatorName": "Q}, {\"x\" and Evil"]])
        let c = Citation(metadata: doc, digest: "sha256:x", url: "u", siteDOI: nil)
        #expect(
            Self.bibtexFields(c.bibtex) == ["title", "author", "year", "version", "publisher", "howpublished", "url", "note", "keywords"],
            "\(c.bibtex)")
        #expect(c.bibtex.contains("X\\textbraceright{}, note = \\textbraceleft{}INJECTED"), "\(c.bibtex)")
        #expect(c.text.filter { $0 == "\n" }.count == 1 && c.text.hasSuffix("\n"), "\(c.text)")
        // A balanced title keeps its readable escapes.
        #expect(Self.bibtexFields(Citation(metadata: Self.metadata, digest: "d", url: "u", siteDOI: nil).bibtex).first == "title")
    }

    @Test func doiSyntax() {
        #expect(Citation.isDOI("10.1016/j.jpdc.2020.08.006"))
        #expect(!Citation.isDOI("10.1234/a\"><script>window.__pwned=8</script>"), "found by the red team")
        #expect(!Citation.isDOI("10.1234/a{b}"))
        #expect(Citation.isDOI("10.1002/(SICI)1097-4636(199706)35:3"))
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
