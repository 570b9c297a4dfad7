/// One entry of a tar archive, as the registry accepts it.
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

/// Reads and writes POSIX tar (ustar, with pax and GNU long names), entirely in memory.
///
/// Reading validates as it goes: absolute paths, `..`, links leading out of the servable,
/// device files and other special entries are refused with an error naming the entry.
public enum TarArchive {
    public static func read(_ data: [UInt8]) throws(DLHubError) -> [TarEntry] {
        var entries: [TarEntry] = []
        var offset = 0
        var paxPath: String?
        var paxLink: String?
        var longName: String?
        var longLink: String?
        while offset + 512 <= data.count {
            let header = Array(data[offset..<offset + 512])
            if header.allSatisfy({ $0 == 0 }) { break }
            guard verifyChecksum(header) else {
                throw DLHubError(
                    .invalidArchive,
                    "the upload is not a valid tar archive (bad header checksum at byte \(offset)); send the servable directory as a tar file"
                )
            }
            let size = Int(octal(header[124..<136]))
            let typeflag = header[156]
            let bodyStart = offset + 512
            guard size >= 0, bodyStart + size <= data.count else {
                throw DLHubError(.invalidArchive, "the tar archive is truncated (an entry claims \(size) bytes past the end)")
            }
            let body = Array(data[bodyStart..<bodyStart + size])
            offset = bodyStart + (size + 511) / 512 * 512

            switch typeflag {
            case UInt8(ascii: "x"):
                let records = parsePax(body)
                paxPath = records["path"] ?? paxPath
                paxLink = records["linkpath"] ?? paxLink
                continue
            case UInt8(ascii: "g"):
                continue
            case UInt8(ascii: "L"):
                longName = cString(body[...])
                continue
            case UInt8(ascii: "K"):
                longLink = cString(body[...])
                continue
            default: break
            }

            var name = cString(header[0..<100])
            let prefix = cString(header[345..<500])
            if !prefix.isEmpty, header[257..<262].elementsEqual(Array("ustar".utf8)) { name = prefix + "/" + name }
            if let p = longName ?? paxPath { name = p }
            var link = cString(header[157..<257])
            if let l = longLink ?? paxLink { link = l }
            paxPath = nil; paxLink = nil; longName = nil; longLink = nil

            let mode = UInt32(truncatingIfNeeded: octal(header[100..<108])) & 0o7777
            if let problem = ArchivePath.problem(with: name) {
                throw DLHubError(.invalidArchive, "tar entry refused: \(problem)")
            }
            let path = ArchivePath.normalize(name)
            if path.isEmpty { continue }  // "./"
            switch typeflag {
            case 0, UInt8(ascii: "0"), UInt8(ascii: "7"):
                entries.append(TarEntry(path: path, kind: .file, mode: mode, contents: body))
            case UInt8(ascii: "5"):
                entries.append(TarEntry(path: path, kind: .directory, mode: mode))
            case UInt8(ascii: "2"):
                guard ArchivePath.linkStaysInside(path: path, target: link) else {
                    throw DLHubError(
                        .invalidArchive, "tar entry refused: the symlink '\(path)' points to '\(link)', outside the servable directory")
                }
                entries.append(TarEntry(path: path, kind: .symlink(target: link), mode: 0o777))
            case UInt8(ascii: "1"):
                throw DLHubError(
                    .invalidArchive, "tar entry refused: '\(path)' is a hard link; archive the file itself (tar --hard-dereference)")
            default:
                throw DLHubError(
                    .invalidArchive,
                    "tar entry refused: '\(path)' is a device, FIFO or other special file; a servable holds only files, directories and symlinks"
                )
            }
        }
        var seen = Set<String>()
        for e in entries where !seen.insert(e.path).inserted {
            if case .directory = e.kind { continue }
            throw DLHubError(.invalidArchive, "tar entry refused: '\(e.path)' appears twice in the archive")
        }
        return entries
    }

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

    static func header(name: String, size: Int, mode: UInt32, type: UInt8, link: String) -> [UInt8] {
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

    static func paxRecord(_ key: String, _ value: String) -> String {
        let body = " \(key)=\(value)\n"
        var length = body.utf8.count + 1
        while String(length).utf8.count + body.utf8.count != length { length += 1 }
        return "\(length)\(body)"
    }

    static func parsePax(_ body: [UInt8]) -> [String: String] {
        var out: [String: String] = [:]
        var i = 0
        while i < body.count {
            var j = i
            while j < body.count, body[j] != 0x20 { j += 1 }
            guard let len = Int(String(decoding: body[i..<j], as: UTF8.self)), len > 0, i + len <= body.count else { break }
            let record = body[(j + 1)..<(i + len - 1)]
            if let eq = record.firstIndex(of: UInt8(ascii: "=")) {
                out[String(decoding: record[record.startIndex..<eq], as: UTF8.self)] =
                    String(decoding: record[(eq + 1)...], as: UTF8.self)
            }
            i += len
        }
        return out
    }

    static func cString(_ bytes: ArraySlice<UInt8>) -> String {
        let end = bytes.firstIndex(of: 0) ?? bytes.endIndex
        return String(decoding: bytes[bytes.startIndex..<end], as: UTF8.self)
    }

    static func octal(_ bytes: ArraySlice<UInt8>) -> Int64 {
        // GNU base-256 encoding for large sizes.
        if let first = bytes.first, first & 0x80 != 0 {
            return bytes.dropFirst().reduce(Int64(first & 0x7f)) { ($0 << 8) | Int64($1) }
        }
        var v: Int64 = 0
        for b in bytes where b >= 48 && b <= 55 { v = v * 8 + Int64(b - 48) }
        return v
    }

    static func verifyChecksum(_ h: [UInt8]) -> Bool {
        let stored = octal(h[148..<156])
        var sum: Int64 = 0
        for (i, b) in h.enumerated() { sum += (148..<156).contains(i) ? 32 : Int64(b) }
        return sum == stored
    }
}
