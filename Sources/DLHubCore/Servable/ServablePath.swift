/// Rules for the paths `servable.json` names (`dlhub.files`): relative, inside the servable.
public enum ServablePath {
    /// Returns nil when `path` is a safe relative path, else what is wrong with it.
    public static func problem(with path: String) -> String? {
        if path.isEmpty { return "the path is empty" }
        if path.hasPrefix("/") { return "'\(path)' is an absolute path; paths must be relative to the servable directory" }
        if path.utf8.contains(0) { return "'\(path)' contains a NUL byte" }
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        if parts.contains("..") { return "'\(path)' contains '..' and would leave the servable directory" }
        if parts.isEmpty { return "the path '\(path)' names no file" }
        return nil
    }

    /// `./a//b/` becomes `a/b`.
    public static func normalize(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: true).filter { $0 != "." }.joined(separator: "/")
    }
}
