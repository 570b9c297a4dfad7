import DLHubCore

/// One entry of a tar archive the tests build.
public struct TarEntry: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        case file
        case directory
        case symlink(target: String)
    }

    public var path: String
    public var kind: Kind
    public var mode: UInt32
    /// The file's bytes; empty for directories and links.
    public var contents: [UInt8]

    public init(path: String, kind: Kind, mode: UInt32 = 0o644, contents: [UInt8] = []) {
        self.path = path
        self.kind = kind
        self.mode = mode
        self.contents = contents
    }
}

/// Writes POSIX tar archives for tests: well-formed ones (to publish fixtures) and, through
/// `header` and `block`, deliberately broken ones (the hostile-upload corpus). The service reads
/// uploads with libarchive; this writer exists only to feed it.
public enum TarWriter {
    public static func write(_ entries: [TarEntry]) -> [UInt8] {
        var out: [UInt8] = []
        for e in entries {
            var name = e.path
            if case .directory = e.kind, !name.hasSuffix("/") { name += "/" }
            var linkTarget = ""
            if case .symlink(let t) = e.kind { linkTarget = t }
            if name.utf8.count > 99 || linkTarget.utf8.count > 99 {
                var records = ""
                if name.utf8.count > 99 { records += paxRecord("path", name) }
                if linkTarget.utf8.count > 99 { records += paxRecord("linkpath", linkTarget) }
                let body = Array(records.utf8)
                out += header(name: "PaxHeader", size: body.count, mode: 0o644, type: UInt8(ascii: "x"), link: "")
                out += body + [UInt8](repeating: 0, count: (512 - body.count % 512) % 512)
            }
            let type: UInt8
            switch e.kind {
            case .file: type = UInt8(ascii: "0")
            case .directory: type = UInt8(ascii: "5")
            case .symlink: type = UInt8(ascii: "2")
            }
            let size = (type == UInt8(ascii: "0")) ? e.contents.count : 0
            out += header(
                name: String(name.utf8.prefix(99))!, size: size, mode: e.mode, type: type, link: String(linkTarget.utf8.prefix(99))!)
            if size > 0 {
                out += e.contents + [UInt8](repeating: 0, count: (512 - size % 512) % 512)
            }
        }
        out += [UInt8](repeating: 0, count: 1024)
        return out
    }

    public static func header(name: String, size: Int, mode: UInt32, type: UInt8, link: String) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: [UInt8], _ at: Int) { for (i, b) in s.enumerated() { h[at + i] = b } }
        func octalField(_ v: Int, width: Int) -> [UInt8] {
            let s = String(v, radix: 8)
            return Array((String(repeating: "0", count: max(0, width - 1 - s.count)) + s).utf8) + [0]
        }
        put(Array(name.utf8), 0)
        put(octalField(Int(mode), width: 8), 100)
        put(octalField(0, width: 8), 108)
        put(octalField(0, width: 8), 116)
        put(octalField(size, width: 12), 124)
        put(octalField(0, width: 12), 136)
        put([UInt8](repeating: 0x20, count: 8), 148)
        h[156] = type
        put(Array(link.utf8), 157)
        put(Array("ustar".utf8) + [0], 257)
        put(Array("00".utf8), 263)
        let sum = h.reduce(0) { $0 + Int($1) }
        put(octalField(sum, width: 7) + [0x20], 148)
        return h
    }

    public static func paxRecord(_ key: String, _ value: String) -> String {
        let body = " \(key)=\(value)\n"
        var length = body.utf8.count + 1
        while String(length).utf8.count + body.utf8.count != length { length += 1 }
        return "\(length)\(body)"
    }

    /// A 512-byte header with `patch` applied (offset -> bytes) and its checksum recomputed
    /// unless `keepChecksum`: how the corpus breaks single fields.
    public static func header(
        name: String, size: Int, type: UInt8 = UInt8(ascii: "0"), patch: [Int: [UInt8]] = [:], keepChecksum: Bool = false
    ) -> [UInt8] {
        var h = header(name: name, size: size, mode: 0o644, type: type, link: "")
        for (offset, bytes) in patch { for (i, b) in bytes.enumerated() where offset + i < 512 { h[offset + i] = b } }
        if !keepChecksum {
            for i in 148..<156 { h[i] = 0x20 }
            let sum = h.reduce(0) { $0 + Int($1) }
            let digits = Array(String(sum, radix: 8).utf8)
            let field = [UInt8](repeating: 0x30, count: max(0, 6 - digits.count)) + digits + [0, 0x20]
            for (i, b) in field.prefix(8).enumerated() { h[148 + i] = b }
        }
        return h
    }

    /// `bytes` padded to whole 512-byte blocks.
    public static func block(_ bytes: [UInt8]) -> [UInt8] { bytes + [UInt8](repeating: 0, count: (512 - bytes.count % 512) % 512) }

    /// The two zero blocks that end an archive.
    public static let end = [UInt8](repeating: 0, count: 1024)
}
