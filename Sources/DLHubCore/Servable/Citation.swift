import Foundation

/// How to cite one servable version, in the formats journals and repositories take: BibTeX,
/// DataCite 4 JSON, Citation File Format (CFF 1.2) and a line of text.
///
/// Built from the published `servable.json` (its DataCite block) and what the registry adds: the
/// owner, version, publication date, the content digest (the persistent identifier every
/// version has) and a DOI the site may have minted for it (a side record: attaching one never
/// changes the digest). Pure: the service and tests render the same text from the same values.
public struct Citation: Sendable, Equatable {
    public struct Creator: Sendable, Equatable {
        /// "Family, Given" as DataCite writes `creatorName`.
        public var name: String
        public var givenName: String?
        public var familyName: String?
        public var affiliations: [String]
        /// The creator's ORCID iD (`0000-0002-1825-0097`), from DataCite's `nameIdentifiers`.
        public var orcid: String? = nil
    }

    public struct RelatedIdentifier: Sendable, Equatable {
        public var identifier: String
        public var type: String
        public var relation: String
    }

    public enum Format: String, Sendable, CaseIterable {
        case bibtex, datacite, cff, text
    }

    public var title: String
    public var creators: [Creator]
    public var publisher: String
    public var year: String
    public var owner: String
    public var name: String
    public var version: Int
    public var digest: String
    /// Where the servable is described: the service's URL for its digest.
    public var url: String
    /// The DOI minted by the site for this version (side record), if any.
    public var doi: String?
    public var related: [RelatedIdentifier]
    public var license: String?
    public var abstract: String?
    public var keywords: [String]
    public var publicationDate: String?

    /// DOIs that stand for "not yet assigned" in DLHub's own metadata templates.
    static let placeholderDOIs: Set<String> = ["10.YET/UNASSIGNED", "10.datacite/placeholder"]

    /// Whether `text` looks like a DOI (`10.<registrant>/<suffix>`).
    public static func isDOI(_ text: String) -> Bool {
        let parts = text.split(separator: "/", maxSplits: 1)
        guard parts.count == 2, parts[0].hasPrefix("10."), parts[0].count >= 7,
            parts[0].dropFirst(3).allSatisfy({ $0.isNumber || $0 == "." }), !parts[1].isEmpty, text.count <= 300
        else { return false }
        // Characters a DOI may hold but not unencoded in a URL or a citation (the DOI Handbook's
        // advice), refused rather than carried into every format (found by the red team).
        let unsafe: Set<Character> = ["\"", "<", ">", "\\", "{", "}", "^", "`", "|"]
        return !text.contains(where: {
            $0.isWhitespace || $0.isNewline || unsafe.contains($0) || ($0.asciiValue.map { $0 < 0x20 } ?? false)
        })
            && !placeholderDOIs.contains(text)
    }

    /// From a published `servable.json`.
    public init(metadata doc: JSONValue, digest: String, url: String, siteDOI: String?) {
        let datacite = doc["datacite"]
        let dlhub = doc["dlhub"]
        title = datacite?["titles"]?.arrayValue?.first?["title"]?.stringValue ?? dlhub?["name"]?.stringValue ?? "Untitled servable"
        creators = (datacite?["creators"]?.arrayValue ?? []).compactMap { c in
            let family = c["familyName"]?.stringValue
            let given = c["givenName"]?.stringValue
            let name =
                c["creatorName"]?.stringValue ?? c["name"]?.stringValue
                ?? [family, given].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ", ")
            guard !name.isEmpty else { return nil }
            let affiliations = (c["affiliations"]?.arrayValue ?? c["affiliation"]?.arrayValue ?? []).compactMap {
                $0.stringValue ?? $0["name"]?.stringValue
            }
            let orcid = (c["nameIdentifiers"]?.arrayValue ?? []).lazy.compactMap { id -> String? in
                guard id["nameIdentifierScheme"]?.stringValue?.uppercased() == "ORCID" else { return nil }
                return id["nameIdentifier"]?.stringValue.flatMap(Self.orcid)
            }.first
            return Creator(name: name, givenName: given, familyName: family, affiliations: affiliations, orcid: orcid)
        }
        publisher = datacite?["publisher"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } ?? "DLHub"
        publicationDate = dlhub?["publication_date"]?.stringValue
        let declaredYear = datacite?["publicationYear"]?.stringValue ?? datacite?["publicationYear"]?.intValue.map(String.init)
        year = declaredYear.flatMap { $0.isEmpty ? nil : $0 } ?? String((publicationDate ?? "").prefix(4))
        owner = dlhub?["owner"]?.stringValue ?? ""
        name = dlhub?["name"]?.stringValue ?? ""
        version = Int(dlhub?["version"]?.intValue ?? 0)
        self.digest = digest
        self.url = url
        var related: [RelatedIdentifier] = []
        if let id = datacite?["identifier"], id["identifierType"]?.stringValue == "DOI", let value = id["identifier"]?.stringValue,
            Self.isDOI(value), value != siteDOI
        {
            related.append(RelatedIdentifier(identifier: value, type: "DOI", relation: "IsIdenticalTo"))
        }
        for r in datacite?["relatedIdentifiers"]?.arrayValue ?? [] {
            guard let value = r["relatedIdentifier"]?.stringValue else { continue }
            related.append(
                RelatedIdentifier(
                    identifier: value, type: r["relatedIdentifierType"]?.stringValue ?? "URL",
                    relation: r["relationType"]?.stringValue ?? "References"))
        }
        self.related = related
        doi = siteDOI
        license = (datacite?["rightsList"]?.arrayValue ?? []).compactMap { $0["rights"]?.stringValue ?? $0["rightsURI"]?.stringValue }.first
        abstract = (datacite?["descriptions"]?.arrayValue ?? []).compactMap { $0["description"]?.stringValue }.first
        keywords =
            (dlhub?["domains"]?.arrayValue ?? []).compactMap(\.stringValue)
            + (datacite?["subjects"]?.arrayValue ?? []).compactMap { $0["subject"]?.stringValue }
    }

    /// An ORCID iD in its canonical form (`0000-0002-1825-0097`), from that or its URL; nil when
    /// it is not one (four groups of four digits, the last character a digit or X).
    public static func orcid(_ text: String) -> String? {
        var id = text.trimmingCharacters(in: .whitespaces)
        for prefix in ["https://orcid.org/", "http://orcid.org/", "orcid.org/"] where id.lowercased().hasPrefix(prefix) {
            id = String(id.dropFirst(prefix.count))
        }
        let groups = id.split(separator: "-", omittingEmptySubsequences: false)
        guard groups.count == 4, groups.allSatisfy({ $0.count == 4 }) else { return nil }
        for (i, g) in groups.enumerated() {
            for (j, c) in g.enumerated() where !(c.isASCII && c.isNumber) && !(i == 3 && j == 3 && c == "X") { return nil }
        }
        return id
    }

    /// Every DOI this version is known by: the site's and those in its metadata.
    public var dois: [String] { ([doi].compactMap { $0 } + related.filter { $0.type == "DOI" }.map(\.identifier)) }

    public func render(_ format: Format) -> String {
        switch format {
        case .bibtex: return bibtex
        case .datacite: return datacite.encodedString(pretty: true)
        case .cff: return cff
        case .text: return text
        }
    }

    /// `Family, G., & Family, G. (year). Title (version N) [Model]. Publisher. DOI or digest`.
    public var text: String {
        let names = creators.map(\.name)
        let authors: String
        switch names.count {
        case 0: authors = owner
        case 1: authors = names[0]
        default: authors = names.dropLast().joined(separator: "; ") + " & " + names.last!
        }
        let locator = doi.map { "https://doi.org/\($0)" } ?? "\(url) (\(digest))"
        let line =
            "\(authors) (\(year)). \(title) (version \(version)) [Computer software: machine-learning model]. \(publisher). \(locator)"
        // One line: a title's newlines would let it forge lines after it (found by the red team).
        return String(String.UnicodeScalarView(line.unicodeScalars.map { $0.properties.generalCategory == .control ? " " : $0 })) + "\n"
    }

    // MARK: BibTeX

    public var bibtex: String {
        let family = creators.first?.familyName ?? creators.first?.name.split(separator: ",").first.map(String.init) ?? owner
        let keyBase = (family + year + name).folding(options: .diacriticInsensitive, locale: nil).unicodeScalars.filter {
            CharacterSet.alphanumerics.contains($0) && $0.isASCII
        }
        let key = String(String.UnicodeScalarView(keyBase)) + "v\(version)"
        var fields: [(String, String)] = [
            ("title", title),
            ("author", creators.isEmpty ? owner : creators.map(\.name).joined(separator: " and ")),
            ("year", year),
            ("version", String(version)),
            ("publisher", publisher),
            ("howpublished", "DLHub servable \(owner)/\(name)@\(version)"),
            ("url", url),
            ("note", "Content digest \(digest)"),
        ]
        if let doi { fields.append(("doi", doi)) }
        if let license { fields.append(("license", license)) }
        if !keywords.isEmpty { fields.append(("keywords", keywords.joined(separator: ", "))) }
        let body = fields.map { "  \($0.0) = {\(Self.bibtexEscape($0.1))}" }.joined(separator: ",\n")
        // @misc: every BibTeX style knows it (biblatex's @software is not BibTeX's).
        return "@misc{\(key),\n\(body)\n}\n"
    }

    /// TeX's special characters escaped, so any title survives a BibTeX parser. BibTeX counts
    /// braces whether or not a backslash comes first: `\{` and `\}` keep a field whole only when
    /// the value's own braces balance. A value whose braces do not (`X}, note = {...`, which
    /// would end the field and start another: found by the red team) has every brace written as
    /// `\textbraceleft{}` and `\textbraceright{}`.
    static func bibtexEscape(_ s: String) -> String {
        var depth = 0
        var balanced = true
        for ch in s {
            if ch == "{" { depth += 1 } else if ch == "}" { depth -= 1 }
            if depth < 0 { balanced = false }
        }
        balanced = balanced && depth == 0
        var out = ""
        for ch in s {
            switch ch {
            case "{" where !balanced: out += "\\textbraceleft{}"
            case "}" where !balanced: out += "\\textbraceright{}"
            case "{", "}", "&", "%", "$", "#", "_": out += "\\" + String(ch)
            case "\\": out += "\\textbackslash{}"
            case "~": out += "\\textasciitilde{}"
            case "^": out += "\\textasciicircum{}"
            case "\n", "\r": out += " "
            default: out.append(ch)
            }
        }
        return out
    }

    // MARK: DataCite 4

    /// A DataCite Metadata Schema 4 document, in the JSON form of DataCite's schema 4.3 (the
    /// `datacite` package's `schema43`): the DOI, the digest and the URL are all `identifiers`.
    public var datacite: JSONValue {
        var doc: [String: JSONValue] = [
            "titles": [["title": .string(title)]],
            "creators": .array(
                creators.map { c in
                    var o: [String: JSONValue] = ["name": .string(c.name), "nameType": "Personal"]
                    if let g = c.givenName { o["givenName"] = .string(g) }
                    if let f = c.familyName { o["familyName"] = .string(f) }
                    if !c.affiliations.isEmpty { o["affiliation"] = .array(c.affiliations.map { ["name": .string($0)] }) }
                    return .object(o)
                }),
            "publisher": .string(publisher),
            "publicationYear": .string(year),
            "types": ["resourceTypeGeneral": "Model", "resourceType": "Machine-learning model (DLHub servable)"],
            "version": .string(String(version)),
            "schemaVersion": "http://datacite.org/schema/kernel-4",
            "identifiers": .array(
                (doi.map { [["identifier": .string($0), "identifierType": "DOI"]] } ?? [])
                    + [
                        ["identifier": .string(digest), "identifierType": "sha256"], ["identifier": .string(url), "identifierType": "URL"],
                    ]),
            "alternateIdentifiers": [["alternateIdentifier": .string("\(owner)/\(name)@\(version)"), "alternateIdentifierType": "DLHub"]],
        ]
        if !related.isEmpty {
            doc["relatedIdentifiers"] = .array(
                related.map {
                    [
                        "relatedIdentifier": .string($0.identifier), "relatedIdentifierType": .string($0.type),
                        "relationType": .string($0.relation),
                    ]
                })
        }
        if let license { doc["rightsList"] = [["rights": .string(license)]] }
        if let abstract { doc["descriptions"] = [["description": .string(abstract), "descriptionType": "Abstract"]] }
        if !keywords.isEmpty { doc["subjects"] = .array(keywords.map { ["subject": .string($0)] }) }
        if let publicationDate { doc["dates"] = [["date": .string(publicationDate), "dateType": "Issued"]] }
        return .object(doc)
    }

    // MARK: CFF 1.2

    public var cff: String {
        var lines = [
            "cff-version: 1.2.0",
            "message: \(Self.yaml("If you use this model, please cite it as below."))",
            "type: software",
            "title: \(Self.yaml(title))",
            "version: \(Self.yaml(String(version)))",
            "authors:",
        ]
        if creators.isEmpty { lines.append("  - name: \(Self.yaml(owner))") }
        for c in creators {
            if let f = c.familyName {
                lines.append("  - family-names: \(Self.yaml(f))")
                if let g = c.givenName { lines.append("    given-names: \(Self.yaml(g))") }
            } else {
                lines.append("  - name: \(Self.yaml(c.name))")
            }
            if let a = c.affiliations.first { lines.append("    affiliation: \(Self.yaml(a))") }
        }
        if let date = publicationDate?.prefix(10), date.count == 10 { lines.append("date-released: \(Self.yaml(String(date)))") }
        if let doi { lines.append("doi: \(Self.yaml(doi))") }
        lines.append("url: \(Self.yaml(url))")
        lines.append("identifiers:")
        if let doi { lines += ["  - type: doi", "    value: \(Self.yaml(doi))"] }
        lines += ["  - type: other", "    value: \(Self.yaml(digest))", "    description: DLHub content digest"]
        for r in related where r.type == "DOI" { lines += ["  - type: doi", "    value: \(Self.yaml(r.identifier))"] }
        if let license { lines.append((license.hasPrefix("http") ? "license-url: " : "license: ") + Self.yaml(license)) }
        if let abstract { lines.append("abstract: \(Self.yaml(abstract))") }
        if !keywords.isEmpty { lines.append("keywords:"); lines += keywords.map { "  - \(Self.yaml($0))" } }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A YAML scalar: always double-quoted, so no value is read as a number, date or tag.
    static func yaml(_ s: String) -> String { JSONValue.string(s).encodedString() }
}
