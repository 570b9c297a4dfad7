import DLHubCore
import Foundation

/// A plain TCP socket on loopback, for tests that play a hostile peer on the service's ports
/// (a forged pilot, a fake service, a slow client): blocking calls with timeouts, nothing hidden.
public final class RawSocket: @unchecked Sendable {
    public let fd: Int32

    init(fd: Int32) { self.fd = fd }

    deinit { close(fd) }

    /// Connects to 127.0.0.1:`port`.
    public static func connect(port: Int) throws -> RawSocket {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSetupError("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            throw TestSetupError("connect to port \(port): \(String(cString: strerror(errno)))")
        }
        return RawSocket(fd: fd)
    }

    /// A listening socket on 127.0.0.1 and `port` (0: a free one), e.g. a port a stopped
    /// service just gave up.
    public static func listen(port: Int = 0) throws -> (socket: RawSocket, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSetupError("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && Glibc.listen(fd, 8) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard ok else {
            close(fd)
            throw TestSetupError("listen: \(String(cString: strerror(errno)))")
        }
        return (RawSocket(fd: fd), Int(UInt16(bigEndian: address.sin_port)))
    }

    /// Waits up to `timeout` seconds for a connection.
    public func accept(timeout: Double) throws -> RawSocket {
        guard wait(timeout) else { throw TestSetupError("no connection within \(timeout) s") }
        let client = Glibc.accept(fd, nil, nil)
        guard client >= 0 else { throw TestSetupError("accept: \(String(cString: strerror(errno)))") }
        return RawSocket(fd: client)
    }

    public func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TestSetupError("send: \(String(cString: strerror(errno)))") }
            offset += n
        }
    }

    public func send(_ frame: PilotFrame) throws { try send(frame.encoded()) }

    /// Bytes that arrive within `timeout` seconds: nil when the peer closed the connection,
    /// empty when nothing came.
    public func receive(timeout: Double) -> [UInt8]? {
        guard wait(timeout) else { return [] }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = recv(fd, &chunk, chunk.count, 0)
        return n <= 0 ? nil : Array(chunk[..<n])
    }

    /// Reads until `timeout` passes or the peer closes; returns the frames and whether it closed.
    public func frames(timeout: Double) -> (frames: [PilotFrame], closed: Bool) {
        let deadline = Date().addingTimeInterval(timeout)
        var bytes: [UInt8] = []
        while Date() < deadline {
            guard let chunk = receive(timeout: deadline.timeIntervalSinceNow) else {
                return ((try? PilotFrame.frames(in: bytes)) ?? [], true)
            }
            bytes += chunk
        }
        return ((try? PilotFrame.frames(in: bytes)) ?? [], false)
    }

    /// Reads frames until one matches or `timeout` passes.
    public func nextFrame(timeout: Double) -> PilotFrame? {
        let deadline = Date().addingTimeInterval(timeout)
        var bytes: [UInt8] = []
        while Date() < deadline {
            if let frame = (try? PilotFrame.frames(in: bytes))?.first { return frame }
            guard let chunk = receive(timeout: deadline.timeIntervalSinceNow) else { return (try? PilotFrame.frames(in: bytes))?.first }
            bytes += chunk
        }
        return nil
    }

    private func wait(_ timeout: Double) -> Bool {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&pfd, 1, Int32(max(0, timeout) * 1000)) > 0
    }
}
