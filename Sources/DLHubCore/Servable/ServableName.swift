/// The rules for owner and servable names, which become directory names in the registry.
public enum ServableName {
    /// Returns nil when `name` is acceptable, else what is wrong with it.
    ///
    /// Names are 1-100 characters of letters, digits, `.`, `_` and `-`, starting with a letter
    /// or digit: no `/`, no `..`, no spaces, nothing a shell or a filesystem treats specially.
    public static func problem(with name: String, kind: String = "name") -> String? {
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

    private static func isLetterOrDigit(_ s: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(s) || ("A"..."Z").contains(s) || ("0"..."9").contains(s)
    }
}
