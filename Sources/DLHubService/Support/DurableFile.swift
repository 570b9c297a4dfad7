import DLHubCore
import Foundation

/// Files the service writes that must be whole or absent: written, synced, and (for `replace`)
/// renamed over the old one, so a reader or a crash never sees half a file.
enum DurableFile {
    /// Writes a file and syncs it; a failed write, sync or close (a quota or I/O error that NFS or
    /// Lustre reports late) is an error.
    static func write(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws(DLHubError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw DLHubError(.internal, "cannot write \(path): \(String(cString: strerror(errno)))") }
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else {
                close(fd)
                throw DLHubError(.internal, "cannot write \(path): \(String(cString: strerror(errno)))")
            }
            offset += n
        }
        fchmod(fd, mode)
        guard fsync(fd) == 0 else {
            let e = String(cString: strerror(errno))
            close(fd)
            throw DLHubError(.internal, "cannot write \(path) to disk: \(e)")
        }
        guard close(fd) == 0 else { throw DLHubError(.internal, "cannot write \(path): \(String(cString: strerror(errno)))") }
    }

    /// Replaces `path` with `bytes`: a synced file of its own beside it (created with `mode`, so
    /// a private file is never readable by others, even for an instant), then renamed over it.
    static func replace(_ path: String, _ bytes: [UInt8], mode: mode_t) throws(DLHubError) {
        let temporary = "\(path).tmp-\(UUID().uuidString)"
        do {
            try write(temporary, bytes, mode: mode)
        } catch {
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let e = String(cString: strerror(errno))
            unlink(temporary)
            throw DLHubError(.internal, "cannot write \(path): \(e)")
        }
    }
}
