import Crypto

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
