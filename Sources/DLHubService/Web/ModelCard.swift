import Foundation
import Ink

/// A servable's `README.md` as HTML for its page: Markdown through Ink, with what a model card may
/// not carry taken out, then checked against `HTMLAllowlist`.
///
/// - Raw HTML (a `<script>`, an `<img onerror>`, a `<style>`) is shown as the text it is.
/// - A link keeps its target only when that is http, https, mailto or relative; otherwise its text
///   stays, unlinked. Links get `rel="nofollow noopener noreferrer"`.
/// - An image is shown as its alt text: the page loads nothing from elsewhere, and the servable's
///   files are not served.
/// - A fenced code block loses its language class (Ink copies the fence line into it as is).
/// - Headings go two levels down (`#` is an h3): the card sits under the page's own h2.
///
/// If the result still fails the allowlist, the whole card is shown as preformatted text.
enum ModelCard {
    /// Model cards longer than this are cut (the API's `model_card` has the same bound).
    static let maxBytes = 65536

    /// Rendered cards by version digest (a version's files never change), the latest `capacity`
    /// rendered kept.
    final class Cache: Sendable {
        let capacity: Int
        private let table = LockedBox<(cards: [String: Node?], order: [String])>(([:], []))

        init(capacity: Int = 512) { self.capacity = max(1, capacity) }

        /// The card of `digest`, rendered from `markdown()` the first time; nil when it has none.
        func rendered(digest: String, _ markdown: () -> String?) -> Node? {
            if let hit = table.update({ $0.cards[digest] }) { return hit }
            let node = markdown().map(ModelCard.render)
            let capacity = self.capacity
            table.update { t in
                guard t.cards[digest] == nil else { return }
                if t.order.count >= capacity { t.cards.removeValue(forKey: t.order.removeFirst()) }
                t.cards[digest] = .some(node)
                t.order.append(digest)
            }
            return node
        }
    }

    static func render(_ markdown: String) -> Node {
        var source = markdown
        if source.utf8.count > maxBytes { source = String(decoding: Array(source.utf8.prefix(maxBytes)), as: UTF8.self) }
        // NUL and the other C0 controls but tab and newline have no place in a card.
        source = String(
            String.UnicodeScalarView(source.unicodeScalars.filter { $0.value >= 0x20 || $0 == "\n" || $0 == "\t" || $0 == "\r" }))
        let html = parser.html(from: source)
        if let checked = SanitizedHTML.afterCheck(html) { return .sanitized(checked) }
        return H.el("pre", [.class("card-plain")], text: source)
    }

    /// Made per card: Ink's parser is not Sendable, and making one is cheap.
    static var parser: MarkdownParser {
        var parser = MarkdownParser()
        parser.addModifier(Modifier(target: .html) { _, markdown in HTMLEscape.text(markdown) })
        parser.addModifier(Modifier(target: .links) { html, markdown in link(html: html, markdown: markdown) })
        parser.addModifier(Modifier(target: .images) { _, markdown in image(markdown: markdown) })
        parser.addModifier(Modifier(target: .codeBlocks) { html, _ in codeBlock(html: html) })
        parser.addModifier(Modifier(target: .headings) { html, _ in heading(html: html) })
        return parser
    }

    /// `<a href="URL">TEXT</a>` from Ink: kept with a safe target, else TEXT alone.
    static func link(html: String, markdown: Substring) -> String {
        let prefix = "<a href=\""
        guard html.hasPrefix(prefix), html.hasSuffix("</a>") else { return HTMLEscape.text(markdown) }
        let afterPrefix = html.dropFirst(prefix.count)
        // The URL ends at the first quote; what follows must be `">` (a URL holding a quote fails).
        guard let quote = afterPrefix.firstIndex(of: "\""), afterPrefix[quote...].hasPrefix("\">") else {
            return HTMLEscape.text(markdown)
        }
        let url = String(afterPrefix[..<quote])
        let inner = String(afterPrefix[afterPrefix.index(quote, offsetBy: 2)...].dropLast(4))
        let target = HTMLAllowlist.unescapeEntities(url)
        guard let safe = SafeURL(userWritten: target) ?? SafeURL(relativeUserWritten: target) else { return inner }
        var out = "<a href=\""
        HTMLEscape.attribute(safe.text, into: &out)
        return out + "\" rel=\"nofollow noopener noreferrer\">" + inner + "</a>"
    }

    /// `![ALT](URL)`: shown as `[image: ALT]`.
    static func image(markdown: Substring) -> String {
        var alt = markdown.dropFirst(2)
        if let end = alt.range(of: "](", options: .backwards) { alt = alt[..<end.lowerBound] }
        return "<span class=\"image\">" + HTMLEscape.text("[image: \(alt.isEmpty ? "untitled" : alt)]") + "</span>"
    }

    /// The card sits under the page's "Model card" (an h2): its `#` is an h3, and so on down to h6.
    static func heading(html: String) -> String {
        let b = Array(html.utf8)
        guard b.count >= 9, b[0] == UInt8(ascii: "<"), b[1] == UInt8(ascii: "h"), (UInt8(ascii: "1")...UInt8(ascii: "6")).contains(b[2]),
            html.hasSuffix("</h\(Character(Unicode.Scalar(b[2])))>")
        else { return HTMLEscape.text(html) }
        let level = min(Int(b[2] - UInt8(ascii: "0")) + 2, 6)
        return "<h\(level)>" + html.dropFirst(4).dropLast(5) + "</h\(level)>"
    }

    /// `<pre><code class="language-X">CODE</code></pre>`: CODE is escaped by Ink (no `>` in it),
    /// X is the fence line as written, so only CODE is kept.
    static func codeBlock(html: String) -> String {
        let suffix = "</code></pre>"
        guard html.hasSuffix(suffix) else { return HTMLEscape.text(html) }
        let body = html.dropLast(suffix.count)
        guard let open = body.lastIndex(of: ">") else { return HTMLEscape.text(html) }
        return "<pre><code>" + body[body.index(after: open)...] + suffix
    }
}
