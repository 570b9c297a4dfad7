/// The rules for owner and servable names, which become directory names in the registry.
public enum ServableName {
    /// Returns nil when `name` is acceptable, else what is wrong with it.
    ///
    /// Names are 1-100 characters of letters, digits, `.`, `_` and `-`, starting with a letter
    /// or digit: no `/`, no `..`, no spaces, nothing a shell or a filesystem treats specially.
    public static func problem(with name: String, kind: String = "name") -> String? {
        if isPlain(name) { return nil }
        if name.isEmpty { return "the \(kind) is empty" }
        if name.utf8.count > 100 { return "the \(kind) is longer than 100 characters" }
        if name.contains("/") { return "the \(kind) '\(name)' contains '/'" }
        if name.contains("..") { return "the \(kind) '\(name)' contains '..'" }
        if name.contains(where: { $0.isWhitespace }) { return "the \(kind) '\(name)' contains spaces" }
        guard let first = name.unicodeScalars.first, isLetterOrDigit(first)
        else { return "the \(kind) '\(name)' must start with a letter or digit" }
        for s in name.unicodeScalars where !(isLetterOrDigit(s) || s == "." || s == "_" || s == "-") {
            return "the \(kind) '\(name)' contains '\(s)'; use letters, digits, '.', '_' and '-'"
        }
        return nil
    }

    /// The common case in one pass over the bytes: 1-100 of letters, digits, '.', '_' and '-',
    /// starting with a letter or digit, with no '..' (exactly the names `problem` accepts).
    static func isPlain(_ name: String) -> Bool {
        let bytes = name.utf8
        guard let first = bytes.first, bytes.count <= 100, isASCIIAlphanumeric(first) else { return false }
        var previousDot = false
        for b in bytes {
            if isASCIIAlphanumeric(b) || b == UInt8(ascii: "_") || b == UInt8(ascii: "-") {
                previousDot = false
            } else if b == UInt8(ascii: "."), !previousDot {
                previousDot = true
            } else {
                return false
            }
        }
        return true
    }

    private static func isASCIIAlphanumeric(_ b: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(b)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b)
    }

    private static func isLetterOrDigit(_ s: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(s) || ("A"..."Z").contains(s) || ("0"..."9").contains(s)
    }
}
