import CArchive
import DLHubCore
import Glibc

/// Unpacks an uploaded servable (tar, tar.gz/.bz2/.xz/.zst, or zip) with libarchive, safe by
/// construction: every entry is created relative to the target directory with `openat`-style
/// calls that never follow a link (no path component may be a link, files are created
/// `O_EXCL|O_NOFOLLOW`), links may only point inside the servable and never through another
/// link, and hard links, devices, FIFOs, absolute paths and `..` are refused, as are uploads over
/// `ArchiveLimits`. Nothing outside `directory` is ever touched. A refusal names the entry.
public enum ArchiveExtractor {
    /// What an unpacked upload holds.
    public struct Unpacked: Sendable {
        /// Regular files other than `servable.json`, hashed while they were written.
        public var manifest: [ContentDigest.ManifestEntry]
        /// Relative paths of files and links (what `dlhub.files` may name).
        public var paths: Set<String>
        /// The uploaded `servable.json` (it is not written: the registry writes the published one).
        public var metadata: [UInt8]?
        /// Bytes of file contents.
        public var bytes: Int64
    }

    public static func unpack(archive path: String, into directory: String, limits: ArchiveLimits) throws(DLHubError) -> Unpacked {
        guard let archive = archive_read_new() else { throw DLHubError(.internal, "libarchive cannot start") }
        defer { archive_read_free(archive) }
        // Compression filters in-process only (no external programs), and two formats.
        _ = archive_read_support_filter_gzip(archive)
        _ = archive_read_support_filter_bzip2(archive)
        _ = archive_read_support_filter_xz(archive)
        _ = archive_read_support_filter_zstd(archive)
        _ = archive_read_support_format_tar(archive)
        _ = archive_read_support_format_zip(archive)
        guard archive_read_open_filename(archive, path, 64 * 1024) == ARCHIVE_OK else {
            throw DLHubError(
                .invalidArchive,
                "the upload is not a tar or zip archive (\(message(archive))); send the servable directory as tar, tar.gz or zip (`dlhub publish DIR` does)"
            )
        }
        let root = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard root >= 0 else { throw DLHubError(.internal, "cannot open the staging directory \(directory): \(errorText())") }
        defer { close(root) }

        var out = Unpacked(manifest: [], paths: [], metadata: nil, bytes: 0)
        var links: [[String]: [String]] = [:]  // link path -> its target, resolved
        var count = 0
        var entry: OpaquePointer?
        while true {
            let rc = archive_read_next_header(archive, &entry)
            if rc == ARCHIVE_EOF { break }
            // A warning (a malformed pax record libarchive would skip, a name it cannot convert) is
            // an error here: an upload is either well-formed or refused.
            guard rc == ARCHIVE_OK, let entry else {
                throw DLHubError(.invalidArchive, "the archive is damaged after \(count) entries: \(message(archive))")
            }
            count += 1
            guard count <= limits.entries else {
                throw DLHubError(.tooLarge, "the archive has more than \(limits.entries) entries; a servable may hold at most that many")
            }
            guard let rawName = archive_entry_pathname_utf8(entry) ?? archive_entry_pathname(entry) else {
                throw DLHubError(.invalidArchive, "entry \(count) of the archive has no name")
            }
            let name = String(cString: rawName)
            let components = try ArchiveEntryPath.components(of: name, limits: limits)
            if components.isEmpty { continue }  // "./", the servable directory itself
            let display = components.joined(separator: "/")
            if archive_entry_hardlink(entry) != nil {
                throw DLHubError(.invalidArchive, "entry '\(display)' is a hard link; archive the file itself (tar --hard-dereference)")
            }
            let type = UInt32(archive_entry_filetype(entry))
            if type == dlhub_archive_type_directory() {
                let fd = try openDirectory(root, components, entry: display, create: true)
                close(fd)
            } else if type == dlhub_archive_type_symlink() {
                guard let rawTarget = archive_entry_symlink_utf8(entry) ?? archive_entry_symlink(entry) else {
                    throw DLHubError(.invalidArchive, "the symlink '\(display)' has no target")
                }
                let target = String(cString: rawTarget)
                guard let resolved = ArchiveEntryPath.resolve(link: components, target: target) else {
                    throw DLHubError(
                        .invalidArchive,
                        "the symlink '\(display)' points to '\(target)', outside the servable directory; include the file itself")
                }
                if display == "servable.json" {
                    throw DLHubError(.invalidArchive, "servable.json is a symlink; it must be a regular file")
                }
                let parent = try openDirectory(root, Array(components.dropLast()), entry: display, create: true)
                defer { close(parent) }
                guard symlinkat(target, parent, components.last!) == 0 else { throw creationError(errno, display) }
                links[components] = resolved
                out.paths.insert(display)
            } else if type == dlhub_archive_type_regular() {
                if components == ["servable.json"] {
                    guard out.metadata == nil else {
                        throw DLHubError(.invalidArchive, "entry 'servable.json' appears twice in the archive")
                    }
                    out.metadata = try readSmall(archive, limit: limits.metadataBytes, entry: display)
                    out.paths.insert(display)
                    continue
                }
                let parent = try openDirectory(root, Array(components.dropLast()), entry: display, create: true)
                defer { close(parent) }
                // Only the executable bit survives: no setuid, no world-writable files.
                let mode: mode_t = archive_entry_perm(entry) & 0o111 != 0 ? 0o755 : 0o644
                let fd = openat(parent, components.last!, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
                guard fd >= 0 else { throw creationError(errno, display) }
                let (size, sha) = try copyData(archive, to: fd, entry: display, limits: limits, total: &out.bytes)
                out.manifest.append(.init(path: display, size: Int(size), sha256: sha))
                out.paths.insert(display)
            } else {
                throw DLHubError(
                    .invalidArchive,
                    "entry '\(display)' is a device, FIFO, socket or other special file; a servable holds only files, directories and symlinks"
                )
            }
        }
        // A link may not lead through another link (a chain could end anywhere): checked once
        // all links exist, whatever order they came in.
        for (link, resolved) in links {
            for i in 1...max(1, resolved.count) where i <= resolved.count {
                let prefix = Array(resolved.prefix(i))
                if links[prefix] != nil {
                    throw DLHubError(
                        .invalidArchive,
                        "the symlink '\(link.joined(separator: "/"))' points through the symlink '\(prefix.joined(separator: "/"))'; links may only point at files and directories"
                    )
                }
            }
        }
        fsyncTree(root)
        return out
    }

    /// Opens (creating as needed) the directory `components` below `root`, never through a link.
    static func openDirectory(_ root: Int32, _ components: [String], entry: String, create: Bool) throws(DLHubError) -> Int32 {
        var fd = dup(root)
        guard fd >= 0 else { throw DLHubError(.internal, "dup: \(errorText())") }
        for (i, part) in components.enumerated() {
            var next = openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if next < 0, errno == ENOENT, create {
                guard mkdirat(fd, part, 0o755) == 0 || errno == EEXIST else {
                    let e = errno
                    close(fd)
                    throw creationError(e, entry)
                }
                next = openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            let e = errno
            close(fd)
            guard next >= 0 else {
                let through = components.prefix(i + 1).joined(separator: "/")
                if e == ELOOP || e == ENOTDIR {
                    throw DLHubError(
                        .invalidArchive, "entry '\(entry)' goes through '\(through)', which is a link or a file, not a directory")
                }
                throw creationError(e, entry)
            }
            fd = next
        }
        return fd
    }

    static func copyData(
        _ archive: OpaquePointer, to fd: Int32, entry: String, limits: ArchiveLimits, total: inout Int64
    ) throws(DLHubError) -> (Int64, String) {
        defer { close(fd) }
        var hasher = ContentDigest.FileHasher()
        var size: Int64 = 0
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * 1024, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = archive_read_data(archive, buffer.baseAddress, buffer.count)
            if n == 0 { break }
            guard n > 0 else { throw DLHubError(.invalidArchive, "entry '\(entry)' is damaged: \(message(archive))") }
            size += Int64(n)
            total += Int64(n)
            guard total <= limits.bytes else {
                throw DLHubError(
                    .tooLarge,
                    "the archive unpacks to more than \(limits.bytes) bytes (at '\(entry)'); a servable may hold at most that much")
            }
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
            hasher.update(chunk)
            var offset = 0
            while offset < n {
                let w = write(fd, chunk.baseAddress! + offset, n - offset)
                guard w > 0 else {
                    throw DLHubError(.internal, "cannot write '\(entry)': \(errorText()) (is the registry's filesystem full?)")
                }
                offset += w
            }
        }
        // NFS and Lustre report quota and I/O errors here: they fail the publish.
        guard fsync(fd) == 0 else { throw DLHubError(.internal, "cannot write '\(entry)' to disk: \(errorText())") }
        return (size, hasher.hex())
    }

    static func readSmall(_ archive: OpaquePointer, limit: Int, entry: String) throws(DLHubError) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { archive_read_data(archive, $0.baseAddress, $0.count) }
            if n == 0 { return out }
            guard n > 0 else { throw DLHubError(.invalidArchive, "entry '\(entry)' is damaged: \(message(archive))") }
            out += chunk[0..<n]
            guard out.count <= limit else { throw DLHubError(.tooLarge, "\(entry) is larger than \(limit) bytes") }
        }
    }

    /// Syncs every directory under `root` (so the names of what was written survive a crash).
    static func fsyncTree(_ root: Int32) {
        _ = fsync(root)
    }

    static func creationError(_ code: Int32, _ entry: String) -> DLHubError {
        if code == EEXIST {
            return DLHubError(.invalidArchive, "entry '\(entry)' appears twice in the archive (or as both a file and a directory)")
        }
        if code == ELOOP || code == ENOTDIR {
            return DLHubError(.invalidArchive, "entry '\(entry)' goes through a link or a file, not a directory")
        }
        return DLHubError(.internal, "cannot create '\(entry)': \(String(cString: strerror(code)))")
    }

    static func message(_ archive: OpaquePointer) -> String {
        archive_error_string(archive).map { String(cString: $0) } ?? "unknown error"
    }

    static func errorText() -> String { String(cString: strerror(errno)) }
}
