import DLHubCore
import Foundation

/// HTML built as values, for the web catalogue: every text and attribute value is escaped when
/// it is rendered, and a link target is a `SafeURL`, which cannot hold `javascript:` or `data:`.
/// The only way to put markup in unescaped is `Node.sanitized`, which only `ModelCard` makes.
///
/// Plot, in the package set, escapes text but writes attribute values as they are (`name="value"`),
/// so a title with a quote in it would end a `content` attribute early: this builder is ours.
enum Node: Sendable {
    case element(String, [Attribute], [Node])
    /// An element with no end tag (`meta`, `link`, `input`, `br`).
    case void(String, [Attribute])
    case text(String)
    case group([Node])
    /// Markup that ModelCard rendered and checked against its allowlist.
    case sanitized(SanitizedHTML)
    /// `<script type="application/ld+json">`: the JSON with `<`, `>` and `&` written as `\u003c`,
    /// `\u003e` and `\u0026`, so that nothing in it can end the element.
    case jsonLD(JSONValue)

    static let empty = Node.group([])

    func render(into out: inout String) {
        switch self {
        case .element(let name, let attributes, let children):
            out += "<" + name
            for a in attributes { a.render(into: &out) }
            out += ">"
            for c in children { c.render(into: &out) }
            out += "</" + name + ">"
        case .void(let name, let attributes):
            out += "<" + name
            for a in attributes { a.render(into: &out) }
            out += ">"
        case .text(let text): HTMLEscape.text(text, into: &out)
        case .group(let nodes): for n in nodes { n.render(into: &out) }
        case .sanitized(let html): out += html.markup
        case .jsonLD(let value):
            out += "<script type=\"application/ld+json\">"
            for c in value.encodedString().unicodeScalars {
                switch c {
                case "<": out += "\\u003c"
                case ">": out += "\\u003e"
                case "&": out += "\\u0026"
                case "\u{2028}": out += "\\u2028"
                case "\u{2029}": out += "\\u2029"
                default: out.unicodeScalars.append(c)
                }
            }
            out += "</script>"
        }
    }

    var rendered: String {
        var out = ""
        render(into: &out)
        return out
    }
}

/// An attribute: its name is one the code spells out, its value is escaped when rendered.
struct Attribute: Sendable {
    let name: String
    let value: String?

    /// Any attribute but those that take a URL (use `href(_:)`, `src(_:)` or `action(_:)`) or run
    /// script (`on...`, `style`).
    init(_ name: String, _ value: String?) {
        precondition(!Self.urlNames.contains(name) && !name.hasPrefix("on") && name != "style", "use a SafeURL for \(name)")
        self.name = name
        self.value = value
    }

    init(urlName name: String, _ value: SafeURL) {
        self.name = name
        self.value = value.text
    }

    static let urlNames: Set<String> = ["href", "src", "action", "formaction", "srcset", "poster", "data", "cite", "background"]

    static func href(_ url: SafeURL) -> Attribute { Attribute(urlName: "href", url) }
    static func action(_ url: SafeURL) -> Attribute { Attribute(urlName: "action", url) }
    static func `class`(_ value: String) -> Attribute { Attribute("class", value) }
    static func id(_ value: String) -> Attribute { Attribute("id", value) }
    /// A boolean attribute (`hidden`, `required`): written by name alone.
    static func flag(_ name: String) -> Attribute { Attribute(name, nil) }

    func render(into out: inout String) {
        out += " " + name
        guard let value else { return }
        out += "=\""
        HTMLEscape.attribute(value, into: &out)
        out += "\""
    }
}

/// A URL a page may link to: relative (a path, a query, a fragment) or http, https or mailto.
struct SafeURL: Sendable, Hashable {
    let text: String

    /// A URL this code builds from parts it has escaped (`relative(_:)` does for paths).
    init(trusted text: String) { self.text = text }

    /// A URL a user wrote (a related identifier, a model card's link): nil unless it is http(s)
    /// or mailto with no whitespace, quotes, angle brackets or control characters.
    init?(userWritten raw: String) {
        let text = raw.trimmingCharacters(in: .whitespaces)
        guard !text.isEmpty, text.utf8.count <= 2048, Self.plainCharacters(text) else { return nil }
        let lower = text.lowercased()
        guard lower.hasPrefix("https://") || lower.hasPrefix("http://") || lower.hasPrefix("mailto:") else { return nil }
        self.text = text
    }

    /// A link within the catalogue (path, query or fragment) as a model card writes it: no
    /// scheme, not protocol-relative (`//host`).
    init?(relativeUserWritten raw: String) {
        let text = raw.trimmingCharacters(in: .whitespaces)
        guard !text.isEmpty, text.utf8.count <= 2048, Self.plainCharacters(text), !text.hasPrefix("//"), !text.hasPrefix("\\") else {
            return nil
        }
        // A colon before the first slash, question mark or hash is a scheme (`javascript:`).
        let head = text.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        guard !head.contains(":") else { return nil }
        self.text = text
    }

    static func plainCharacters(_ text: String) -> Bool {
        text.unicodeScalars.allSatisfy { s in
            s.value > 0x20 && s.value != 0x7F && !(0x80...0x9F).contains(s.value) && s != "\"" && s != "'" && s != "<" && s != ">"
                && s != "\\" && s != "`"
        }
    }

    /// `https://doi.org/<doi>`, with the DOI's characters that are not safe in a URL path escaped.
    static func doi(_ doi: String) -> SafeURL {
        SafeURL(trusted: "https://doi.org/" + percentEncoded(doi, keeping: "/.-_;()"))
    }

    /// Percent-encodes everything but unreserved characters and `keeping`.
    static func percentEncoded(_ text: String, keeping: String = "") -> String {
        var out = ""
        let kept = Set(keeping.utf8)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case _ where kept.contains(byte):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += "%" + String(byte >> 4, radix: 16, uppercase: true) + String(byte & 0xF, radix: 16, uppercase: true)
            }
        }
        return out
    }
}

/// Markup ModelCard rendered from Markdown and checked: only allowlisted tags and attributes.
struct SanitizedHTML: Sendable, Hashable {
    let markup: String
    fileprivate init(checked markup: String) { self.markup = markup }
}

extension SanitizedHTML {
    /// Only ModelCard calls this, after `HTMLAllowlist.permits`.
    static func afterCheck(_ markup: String) -> SanitizedHTML? {
        HTMLAllowlist.permits(markup) ? SanitizedHTML(checked: markup) : nil
    }
}

enum HTMLEscape {
    static func text(_ s: String, into out: inout String) { escape(s, quotes: false, into: &out) }

    static func attribute(_ s: String, into out: inout String) { escape(s, quotes: true, into: &out) }

    /// `&`, `<` and `>` always; `"` and `'` too inside an attribute value.
    private static func escape(_ s: String, quotes: Bool, into out: inout String) {
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"" where quotes: out += "&quot;"
            case "'" where quotes: out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
    }

    static func text(_ s: some StringProtocol) -> String {
        var out = ""
        text(String(s), into: &out)
        return out
    }
}

/// The tags and attributes a rendered model card may hold; anything else fails the check.
///
/// A second line behind ModelCard's modifiers: were Ink ever to pass markup through that they do
/// not catch, the card is shown as plain text instead.
enum HTMLAllowlist {
    static let tags: Set<String> = [
        "p", "a", "em", "strong", "code", "pre", "ul", "ol", "li", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "br",
        "table", "thead", "tbody", "tr", "th", "td", "del", "s", "span",
    ]
    /// Attribute names allowed per tag, and a check of each value.
    static func valueAllowed(tag: String, name: String, value: String) -> Bool {
        switch (tag, name) {
        case ("a", "href"):
            let url = unescapeEntities(value)
            return SafeURL(userWritten: url) != nil || SafeURL(relativeUserWritten: url) != nil
        case ("a", "rel"): return value == "nofollow noopener noreferrer"
        case ("th", "align"), ("td", "align"): return ["left", "center", "right"].contains(value)
        case ("ol", "start"): return !value.isEmpty && value.count <= 9 && value.allSatisfy(\.isASCII) && value.allSatisfy(\.isNumber)
        case ("span", "class"): return value == "image"
        default: return false
        }
    }

    /// Whether every tag in `html` is allowlisted with allowlisted attributes, values quoted with
    /// `"` and holding none.
    static func permits(_ html: String) -> Bool {
        let b = Array(html.utf8)
        var i = 0
        func isNameByte(_ c: UInt8) -> Bool {
            (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
        }
        while i < b.count {
            if b[i] == UInt8(ascii: ">") { return false }  // Ink escapes a bare `>`
            guard b[i] == UInt8(ascii: "<") else {
                i += 1
                continue
            }
            i += 1
            let closing = i < b.count && b[i] == UInt8(ascii: "/")
            if closing { i += 1 }
            let nameStart = i
            while i < b.count, isNameByte(b[i]) { i += 1 }
            let tag = String(decoding: b[nameStart..<i], as: UTF8.self)
            guard tags.contains(tag) else { return false }
            if closing {
                guard i < b.count, b[i] == UInt8(ascii: ">") else { return false }
                i += 1
                continue
            }
            // Attributes: ` name="value"` pairs, then `>` or `/>`.
            while true {
                guard i < b.count else { return false }
                if b[i] == UInt8(ascii: ">") {
                    i += 1
                    break
                }
                if b[i] == UInt8(ascii: "/"), i + 1 < b.count, b[i + 1] == UInt8(ascii: ">"), tag == "br" || tag == "hr" {
                    i += 2
                    break
                }
                guard b[i] == UInt8(ascii: " ") else { return false }
                i += 1
                let attrStart = i
                while i < b.count, isNameByte(b[i]) { i += 1 }
                let name = String(decoding: b[attrStart..<i], as: UTF8.self)
                guard i + 1 < b.count, b[i] == UInt8(ascii: "="), b[i + 1] == UInt8(ascii: "\"") else { return false }
                i += 2
                let valueStart = i
                while i < b.count, b[i] != UInt8(ascii: "\""), b[i] != UInt8(ascii: "<"), b[i] != UInt8(ascii: ">") { i += 1 }
                guard i < b.count, b[i] == UInt8(ascii: "\"") else { return false }
                let value = String(decoding: b[valueStart..<i], as: UTF8.self)
                i += 1
                guard valueAllowed(tag: tag, name: name, value: value) else { return false }
            }
        }
        return true
    }

    /// `&amp;`, `&quot;`, `&#39;`, `&lt;`, `&gt;` and numeric references, as a browser reads an
    /// attribute value (so that `&#106;avascript:` is seen as `javascript:`).
    static func unescapeEntities(_ s: String) -> String {
        guard s.contains("&") else { return s }
        var out = ""
        var rest = Substring(s)
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            let after = rest[rest.index(after: amp)...]
            guard let semi = after.prefix(12).firstIndex(of: ";") else {
                out += "&"
                rest = after
                continue
            }
            let entity = after[..<semi]
            var decoded: String?
            switch entity {
            case "amp": decoded = "&"
            case "quot": decoded = "\""
            case "lt": decoded = "<"
            case "gt": decoded = ">"
            case "apos": decoded = "'"
            default:
                if entity.hasPrefix("#x") || entity.hasPrefix("#X"), let v = UInt32(entity.dropFirst(2), radix: 16) {
                    decoded = Unicode.Scalar(v).map { String($0) } ?? "\u{FFFD}"
                } else if entity.hasPrefix("#"), let v = UInt32(entity.dropFirst()) {
                    decoded = Unicode.Scalar(v).map { String($0) } ?? "\u{FFFD}"
                }
            }
            // An entity a browser would read but this does not know: refuse rather than guess.
            out += decoded ?? "\u{FFFD}"
            rest = after[after.index(after: semi)...]
        }
        return out + rest
    }
}

/// Short constructors, so that pages read as their markup does.
enum H {
    static func el(_ name: String, _ attributes: [Attribute] = [], _ children: [Node] = []) -> Node {
        .element(name, attributes, children)
    }
    static func el(_ name: String, _ attributes: [Attribute] = [], text: String) -> Node {
        .element(name, attributes, [.text(text)])
    }
    static func a(_ url: SafeURL, _ children: [Node], _ attributes: [Attribute] = []) -> Node {
        .element("a", [.href(url)] + attributes, children)
    }
    static func a(_ url: SafeURL, text: String, _ attributes: [Attribute] = []) -> Node {
        .element("a", [.href(url)] + attributes, [.text(text)])
    }
}
