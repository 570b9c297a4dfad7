import DLHubCore

/// Rules for the names inside an uploaded servable: relative, inside, no tricks.
enum ArchiveEntryPath {
    /// The components of an entry's name (`./a//b/` is `a/b`), or an error naming the problem.
    static func components(of name: String, limits: ArchiveLimits) throws(DLHubError) -> [String] {
        let shown = String(name.unicodeScalars.prefix(200).map { $0.value < 32 ? "?" : Character($0) })
        if name.utf8.count > limits.pathBytes {
            throw DLHubError(.invalidArchive, "entry '\(shown)…' has a path longer than \(limits.pathBytes) bytes")
        }
        if name.hasPrefix("/") {
            throw DLHubError(.invalidArchive, "entry '\(shown)' is an absolute path; paths must be relative to the servable directory")
        }
        if name.utf8.contains(0) { throw DLHubError(.invalidArchive, "entry '\(shown)' contains a NUL byte") }
        let parts = name.split(separator: "/", omittingEmptySubsequences: true).map(String.init).filter { $0 != "." }
        if parts.contains("..") {
            throw DLHubError(.invalidArchive, "entry '\(shown)' contains '..' and would leave the servable directory")
        }
        if parts.count > limits.depth {
            throw DLHubError(.invalidArchive, "entry '\(shown)' is nested \(parts.count) directories deep; at most \(limits.depth)")
        }
        if let long = parts.first(where: { $0.utf8.count > 255 }) {
            throw DLHubError(.invalidArchive, "entry '\(shown)' has a name longer than 255 bytes ('\(long.prefix(40))…')")
        }
        return parts
    }

    /// Where a link at `link` (components) pointing to `target` leads, as components from the
    /// servable's top; nil when that is outside it (or nowhere).
    static func resolve(link: [String], target: String) -> [String]? {
        if target.isEmpty || target.hasPrefix("/") || target.utf8.contains(0) || target.utf8.count > 4096 { return nil }
        var stack = Array(link.dropLast())
        for part in target.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." {
                if stack.isEmpty { return nil }
                stack.removeLast()
            } else {
                stack.append(String(part))
            }
        }
        return stack
    }
}
