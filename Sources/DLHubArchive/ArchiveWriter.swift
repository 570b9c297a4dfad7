import CArchive
import DLHubCore
import Foundation

/// Packs a servable directory into a gzip-compressed tar file (pax format) for upload: what
/// `dlhub publish DIR` sends.
public enum ArchiveWriter {
    /// Directory names that never belong in a published servable.
    public static let skipped: Set<String> = [".git", "__pycache__", ".ipynb_checkpoints", ".DS_Store"]

    /// Writes `directory` to `file` (tar.gz); symlinks stay links, other special files are refused.
    /// `renaming` gives top-level files another name in the archive (`dlhub.json` sent as `servable.json`).
    public static func pack(_ directory: String, to file: String, renaming: [String: String] = [:]) throws(DLHubError) {
        guard let archive = archive_write_new() else { throw DLHubError(.internal, "libarchive cannot start") }
        defer { archive_write_free(archive) }
        _ = archive_write_add_filter_gzip(archive)
        _ = archive_write_set_format_pax_restricted(archive)
        guard archive_write_open_filename(archive, file) == ARCHIVE_OK else {
            throw DLHubError(.internal, "cannot write \(file): \(message(archive))")
        }
        let fm = FileManager.default
        func add(_ relative: String) throws(DLHubError) {
            let full = relative.isEmpty ? directory : directory + "/" + relative
            let items: [String]
            do { items = try fm.contentsOfDirectory(atPath: full).sorted() } catch {
                throw DLHubError(.badRequest, "cannot read \(full): \(error.localizedDescription)")
            }
            for item in items where !skipped.contains(item) {
                let rel = relative.isEmpty ? item : relative + "/" + item
                let path = directory + "/" + rel
                var info = stat()
                guard lstat(path, &info) == 0 else {
                    throw DLHubError(.badRequest, "cannot read \(path): \(String(cString: strerror(errno)))")
                }
                guard let entry = archive_entry_new() else { throw DLHubError(.internal, "libarchive cannot make an entry") }
                defer { archive_entry_free(entry) }
                archive_entry_set_pathname_utf8(entry, relative.isEmpty ? (renaming[rel] ?? rel) : rel)
                archive_entry_set_mtime(entry, info.st_mtim.tv_sec, 0)
                switch info.st_mode & S_IFMT {
                case S_IFDIR:
                    archive_entry_set_filetype(entry, dlhub_archive_type_directory())
                    archive_entry_set_perm(entry, 0o755)
                    try header(archive, entry, path)
                    try add(rel)
                case S_IFLNK:
                    let target: String
                    do { target = try fm.destinationOfSymbolicLink(atPath: path) } catch {
                        throw DLHubError(.badRequest, "cannot read the link \(path)")
                    }
                    archive_entry_set_filetype(entry, dlhub_archive_type_symlink())
                    archive_entry_set_symlink_utf8(entry, target)
                    archive_entry_set_perm(entry, 0o777)
                    try header(archive, entry, path)
                case S_IFREG:
                    archive_entry_set_filetype(entry, dlhub_archive_type_regular())
                    archive_entry_set_perm(entry, info.st_mode & 0o111 != 0 ? 0o755 : 0o644)
                    archive_entry_set_size(entry, Int64(info.st_size))
                    try header(archive, entry, path)
                    try copy(path, into: archive)
                default:
                    throw DLHubError(
                        .badRequest, "\(path) is not a regular file, directory or symlink; remove it from the servable directory")
                }
            }
        }
        try add("")
        guard archive_write_close(archive) == ARCHIVE_OK else { throw DLHubError(.internal, "cannot finish \(file): \(message(archive))") }
    }

    static func header(_ archive: OpaquePointer, _ entry: OpaquePointer, _ path: String) throws(DLHubError) {
        guard archive_write_header(archive, entry) == ARCHIVE_OK else {
            throw DLHubError(.badRequest, "cannot pack \(path): \(message(archive))")
        }
    }

    static func copy(_ path: String, into archive: OpaquePointer) throws(DLHubError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DLHubError(.badRequest, "cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n == 0 { return }
            guard n > 0 else { throw DLHubError(.badRequest, "cannot read \(path): \(String(cString: strerror(errno)))") }
            let written = buffer.withUnsafeBytes { archive_write_data(archive, $0.baseAddress, n) }
            guard written == n else { throw DLHubError(.internal, "cannot pack \(path): \(message(archive))") }
        }
    }

    static func message(_ archive: OpaquePointer) -> String {
        archive_error_string(archive).map { String(cString: $0) } ?? "unknown error"
    }
}
