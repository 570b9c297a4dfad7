import Foundation

/// Many TCP connections to one port on loopback, all from one source address, each behaving
/// one way: the attack of a user on a login node who opens connections and never speaks (or
/// speaks garbage, or a byte at a time, or closes half of the connection).
///
/// Non-blocking sockets, so thousands open in a moment without a thread each. The test process
/// raises its own descriptor limit to make room.
public final class ConnectionFlood: @unchecked Sendable {
    public enum Behaviour: Sendable, CaseIterable {
        /// Connected, silent.
        case idle
        /// Sends random bytes once.
        case garbage
        /// Sends one byte of a plausible start each time `trickle()` is called.
        case slow
        /// Sends a few bytes, then shuts down its sending side and keeps the socket.
        case halfOpen
    }

    public private(set) var sockets: [(fd: Int32, behaviour: Behaviour)] = []
    /// Connections the kernel refused or that failed to connect at all.
    public private(set) var failedToConnect = 0
    let port: Int
    let source: String

    /// Opens `count` connections to 127.0.0.1:`port` from `source` (any 127.x.y.z address is
    /// this machine), their behaviours taken in turn from `behaviours` (seeded by `seed`).
    public init(port: Int, count: Int, from source: String = "127.0.0.1", behaviours: [Behaviour] = [.idle], seed: UInt64 = 1) {
        self.port = port
        self.source = source
        Self.raiseDescriptorLimit(to: count + 4096)
        var random = SeededGenerator(seed: seed)
        for i in 0..<count {
            let behaviour = behaviours[i % behaviours.count]
            guard let fd = Self.connect(port: port, from: source) else {
                failedToConnect += 1
                continue
            }
            sockets.append((fd, behaviour))
            switch behaviour {
            case .idle, .slow: break
            case .garbage:
                var bytes = (0..<Int.random(in: 1...512, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
                _ = Glibc.send(fd, &bytes, bytes.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            case .halfOpen:
                var bytes: [UInt8] = [0, 0, 0, 9, 1]
                _ = Glibc.send(fd, &bytes, bytes.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                shutdown(fd, Int32(SHUT_WR))
            }
        }
    }

    /// One more byte from every slow connection.
    public func trickle() {
        var byte: UInt8 = 0x50
        for s in sockets where s.behaviour == .slow { _ = Glibc.send(s.fd, &byte, 1, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
    }

    /// How many connections the far side has not closed (reads and discards what it sent).
    public func stillOpen() -> Int {
        var open = 0
        var chunk = [UInt8](repeating: 0, count: 4096)
        for s in sockets {
            var pfd = pollfd(fd: s.fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, 0)
            if ready == 0 {
                open += 1
                continue
            }
            if pfd.revents & Int16(POLLHUP | POLLERR) != 0 { continue }
            let n = recv(s.fd, &chunk, chunk.count, Int32(MSG_DONTWAIT))
            if n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { open += 1 }
        }
        return open
    }

    /// Closes every connection of the flood.
    public func close() {
        for s in sockets { Glibc.close(s.fd) }
        sockets = []
    }

    deinit { close() }

    /// A connected non-blocking socket, or nil when connecting failed outright.
    static func connect(port: Int, from source: String) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return nil }
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_addr.s_addr = inet_addr(source)
        var remote = sockaddr_in()
        remote.sin_family = sa_family_t(AF_INET)
        remote.sin_port = in_port_t(UInt16(port).bigEndian)
        remote.sin_addr.s_addr = inet_addr("127.0.0.1")
        let size = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, size) } }
        let rc = withUnsafePointer(to: &remote) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, size) } }
        guard bound == 0, rc == 0 || errno == EINPROGRESS else {
            Glibc.close(fd)
            return nil
        }
        // Wait for the handshake (loopback: at once, or refused when the backlog is full).
        var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        guard poll(&pfd, 1, 2000) > 0 else {
            Glibc.close(fd)
            return nil
        }
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        guard error == 0 else {
            Glibc.close(fd)
            return nil
        }
        return fd
    }

    /// Raises this process's descriptor limit to at least `wanted` (as far as the hard limit allows).
    public static func raiseDescriptorLimit(to wanted: Int) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < rlim_t(wanted) else { return }
        limit.rlim_cur = min(rlim_t(wanted), limit.rlim_max)
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}

/// A small seeded generator (SplitMix64): a test that draws from it replays from its seed.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
