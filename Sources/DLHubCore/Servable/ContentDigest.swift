import Crypto
import Foundation

/// The persistent identifier of a servable version: `sha256:<hex>` over its canonical metadata
/// and a manifest of its files' hashes.
///
/// The metadata hashed is the published `servable.json` without `dlhub.identifier` (which holds
/// the digest itself), so anyone can recompute and check it from the registry directory.
public enum ContentDigest {
    /// One file of the servable, as it enters the manifest.
    public struct ManifestEntry: Sendable, Hashable {
        public var path: String
        public var size: Int
        public var sha256: String
        public init(path: String, size: Int, sha256: String) {
            self.path = path
            self.size = size
            self.sha256 = sha256
        }
    }

    /// SHA-256 of a file as it streams by.
    public struct FileHasher {
        var sha = SHA256()
        public init() {}
        public mutating func update(_ bytes: UnsafeRawBufferPointer) { sha.update(bufferPointer: bytes) }
        public func hex() -> String { ContentDigest.hex(sha.finalize()) }
    }

    public static func sha256Hex(_ bytes: some Sequence<UInt8>) -> String {
        var hasher = SHA256()
        hasher.update(data: Array(bytes))
        return hex(hasher.finalize())
    }

    static func hex(_ digest: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in digest { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 0xF)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether `text` has the shape of a digest: `sha256:` and 64 lowercase hex digits.
    public static func isWellFormed(_ text: String) -> Bool {
        guard text.hasPrefix("sha256:") else { return false }
        let hex = text.utf8.dropFirst(7)
        return hex.count == 64 && hex.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    /// The manifest text: one `sha256  size  path` line per file, sorted by path.
    public static func manifest(_ entries: [ManifestEntry]) -> String {
        entries.sorted { $0.path < $1.path }.map { "\($0.sha256)  \($0.size)  \($0.path)\n" }.joined()
    }

    /// The manifest of a servable directory as published: every regular file below it, by its
    /// path relative to it, except `servable.json` (hashed as metadata) and `withdrawn.json`
    /// (a tombstone); symlinks and directories are not entries (a link can only name a file
    /// that is one).
    public static func manifest(ofDirectory root: String) throws -> [ManifestEntry] {
        var out: [ManifestEntry] = []
        let fm = FileManager.default
        func walk(_ relative: String) throws {
            let full = relative.isEmpty ? root : root + "/" + relative
            for item in try fm.contentsOfDirectory(atPath: full).sorted() {
                let rel = relative.isEmpty ? item : relative + "/" + item
                if relative.isEmpty, item == "servable.json" || item == "withdrawn.json" { continue }
                var info = stat()
                guard lstat(root + "/" + rel, &info) == 0 else { throw CocoaError(.fileReadUnknown) }
                switch info.st_mode & S_IFMT {
                case S_IFDIR: try walk(rel)
                case S_IFREG:
                    let (size, sha) = try hashFile(root + "/" + rel)
                    out.append(ManifestEntry(path: rel, size: size, sha256: sha))
                default: continue
                }
            }
        }
        try walk("")
        return out
    }

    /// Size and SHA-256 of a file, read in blocks.
    public static func hashFile(_ path: String) throws -> (Int, String) {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw CocoaError(.fileReadNoPermission) }
        defer { try? handle.close() }
        var hasher = FileHasher()
        var size = 0
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            size += chunk.count
            chunk.withUnsafeBytes { hasher.update($0) }
        }
        return (size, hasher.hex())
    }

    public static func compute(metadata: JSONValue, files: [ManifestEntry]) -> String {
        var doc = metadata
        if var dlhub = doc["dlhub"]?.objectValue {
            dlhub.removeValue(forKey: "identifier")
            doc = doc.setting(["dlhub"], to: .object(dlhub))
        }
        var hasher = SHA256()
        hasher.update(data: Array("dlhub-servable-v1\n".utf8))
        hasher.update(data: doc.encoded())
        hasher.update(data: Array("\n".utf8))
        hasher.update(data: Array(manifest(files).utf8))
        return "sha256:" + hex(hasher.finalize())
    }
}
