import Foundation
import Glibc

/// What an install may change in a virtual environment: files in its site-packages, new scripts
/// in `bin/` and new headers in `include/`. Anything else (a data file that lands on
/// `pyvenv.cfg`, a script named `python`, a file in `etc/` or `share/`) is a package reaching for
/// the environment's own files, which the pilot reads to decide what a sandbox sees.
///
/// Used as: `snapshot` after the environment is created, `snapshot` again after the install,
/// `violations` between the two, `owner` to name the package that brought a file.
public enum EnvironmentAudit {
    public struct Node: Equatable, Sendable {
        public enum Kind: Equatable, Sendable {
            case file, directory, symlink(String), other
        }
        var kind: Kind
        var size: Int64
        var modified: Int
        var inode: UInt64
    }

    /// Every path under `directory` (relative, not following links), site-packages left out.
    public static func snapshot(_ directory: String) -> [String: Node] {
        var out: [String: Node] = [:]
        walk(directory, relative: "", into: &out)
        return out
    }

    /// Whether `relative` is (or is inside) `lib/pythonX.Y/site-packages`.
    public static func isSitePackages(_ relative: String) -> Bool {
        let parts = relative.split(separator: "/", omittingEmptySubsequences: true)
        return parts.count >= 3 && (parts[0] == "lib" || parts[0] == "lib64") && parts[1].hasPrefix("python")
            && parts[2] == "site-packages"
    }

    private static func walk(_ root: String, relative: String, into out: inout [String: Node]) {
        let path = relative.isEmpty ? root : root + "/" + relative
        guard let dir = opendir(path) else { return }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name == "." || name == ".." { continue }
            let child = relative.isEmpty ? name : relative + "/" + name
            if isSitePackages(child) { continue }
            var info = stat()
            guard lstat(root + "/" + child, &info) == 0 else { continue }
            let kind: Node.Kind
            switch info.st_mode & S_IFMT {
            case S_IFREG: kind = .file
            case S_IFDIR: kind = .directory
            case S_IFLNK:
                var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                let n = readlink(root + "/" + child, &buffer, buffer.count - 1)
                kind = .symlink(n >= 0 ? String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "")
            default: kind = .other
            }
            out[child] = Node(kind: kind, size: Int64(info.st_size), modified: Int(info.st_mtim.tv_sec), inode: UInt64(info.st_ino))
            if kind == .directory { walk(root, relative: child, into: &out) }
        }
    }

    /// Paths the install wrote that it may not have: a changed file that was there before (a
    /// directory may gain entries), or a new one outside `bin/` and `include/`.
    public static func violations(before: [String: Node], after: [String: Node]) -> [String] {
        var out: [String] = []
        for (path, node) in after {
            if let old = before[path] {
                if old.kind == .directory, node.kind == .directory { continue }
                if old != node { out.append(path) }
                continue
            }
            let top = path.split(separator: "/").first.map(String.init) ?? path
            let allowed: Bool
            switch top {
            case "bin": allowed = node.kind == .file && path.split(separator: "/").count == 2
            case "include": allowed = node.kind == .file || node.kind == .directory
            // uv's lock while it installs: empty, and read by nothing.
            case ".lock": allowed = path == ".lock" && node.kind == .file && node.size == 0
            default: allowed = false
            }
            if !allowed { out.append(path) }
        }
        return out.sorted()
    }

    /// The installed distribution that lists `relative` in its RECORD ("name version"), if any.
    public static func owner(of relative: String, in directory: String) -> String? {
        let target = ((directory + "/" + relative) as NSString).standardizingPath
        let fm = FileManager.default
        guard let pythons = try? fm.contentsOfDirectory(atPath: directory + "/lib") else { return nil }
        for python in pythons where python.hasPrefix("python") {
            let site = directory + "/lib/" + python + "/site-packages"
            for info in (try? fm.contentsOfDirectory(atPath: site)) ?? [] where info.hasSuffix(".dist-info") {
                guard let record = try? String(contentsOfFile: site + "/" + info + "/RECORD", encoding: .utf8) else { continue }
                for line in record.split(separator: "\n") {
                    let listed = String(line.split(separator: ",", maxSplits: 1).first ?? "")
                    let absolute = listed.hasPrefix("/") ? listed : site + "/" + listed
                    if (absolute as NSString).standardizingPath == target {
                        let stem = String(info.dropLast(".dist-info".count))
                        guard let dash = stem.lastIndex(of: "-") else { return stem }
                        return stem[..<dash] + " " + stem[stem.index(after: dash)...]
                    }
                }
            }
        }
        return nil
    }
}
