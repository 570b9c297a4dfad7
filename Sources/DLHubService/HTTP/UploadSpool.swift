import DLHubCore
import Foundation
import Hummingbird

/// An upload on its way in: the request body streamed to a private file on the service's local
/// disk, never held in memory whole, and refused once it passes the limit.
struct UploadSpool: Sendable {
    let path: String

    /// Streams `body` into a new file in `directory`; throws 413 past `limit` bytes.
    static func receive(_ body: RequestBody, into directory: String, limit: Int) async throws -> UploadSpool {
        let path = directory + "/upload-" + UUID().uuidString
        let fd = try await BlockingIO.run { () throws(DLHubError) -> Int32 in
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard fd >= 0 else {
                throw DLHubError(.internal, "cannot spool an upload in \(directory): \(String(cString: strerror(errno)))")
            }
            return fd
        }
        let spool = UploadSpool(path: path)
        do {
            var pending: [UInt8] = []
            var total = 0
            for try await chunk in body {
                total += chunk.readableBytes
                guard total <= limit else {
                    throw DLHubError(
                        .tooLarge, "the upload is larger than \(limit) bytes (max_upload_bytes); remove what the servable does not need")
                }
                pending += chunk.readableBytesView
                if pending.count >= 1 << 20 {
                    try await write(pending, to: fd)
                    pending.removeAll(keepingCapacity: true)
                }
            }
            if !pending.isEmpty { try await write(pending, to: fd) }
            close(fd)
        } catch {
            close(fd)
            spool.remove()
            throw error
        }
        return spool
    }

    static func write(_ bytes: [UInt8], to fd: Int32) async throws(DLHubError) {
        try await BlockingIO.run { () throws(DLHubError) in
            var offset = 0
            while offset < bytes.count {
                let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                guard n > 0 else { throw DLHubError(.internal, "cannot spool the upload: \(String(cString: strerror(errno)))") }
                offset += n
            }
        }
    }

    func remove() { unlink(path) }
}
