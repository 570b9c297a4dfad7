import DLHubCore
import Foundation
import Logging
import Metrics
import NIOCore

/// Bounds the HTTP connections one peer address, and everyone together, may hold open.
///
/// A connection costs a descriptor and some memory before it sends a byte, and connections
/// that never authenticate are not covered by any per-user quota. So each peer gets a share
/// (`http_max_connections_per_peer`) and the whole port a ceiling below the descriptor limit
/// (`http_max_connections`); a connection past either is closed as it arrives, and the refusal
/// is logged (once a second, not once per connection).
final class ConnectionLimiter: Sendable {
    let perPeer: Int
    let total: Int
    let logger: Logger
    private let state = LockedBox(State())
    private let refused = Counter(label: "dlhub_http_connections_refused_total")

    struct State: Sendable {
        var byPeer: [String: Int] = [:]
        var open = 0
        var lastLog: UInt64 = 0
    }

    init(perPeer: Int, total: Int, logger: Logger) {
        self.perPeer = max(1, perPeer)
        self.total = max(1, total)
        self.logger = logger
    }

    /// A handler for one new connection (added first to its pipeline).
    func handler() -> Handler { Handler(limiter: self) }

    /// Whether a connection from `peer` may stay; counted when it may.
    func admit(_ peer: String) -> Bool {
        let now = DispatchTime.now().uptimeNanoseconds
        let (ok, log, count) = state.update { s -> (Bool, Bool, Int) in
            let held = s.byPeer[peer, default: 0]
            guard held < perPeer, s.open < total else {
                let log = now &- s.lastLog > 1_000_000_000
                if log { s.lastLog = now }
                return (false, log, held)
            }
            s.byPeer[peer] = held + 1
            s.open += 1
            return (true, false, held)
        }
        if !ok {
            refused.increment()
            if log {
                logger.warning(
                    count >= perPeer
                        ? "HTTP connection refused: too many open connections from one peer"
                        : "HTTP connection refused: too many open connections",
                    metadata: ["remote": "\(peer)", "http.per_peer_limit": "\(perPeer)", "http.limit": "\(total)"])
            }
        }
        return ok
    }

    func release(_ peer: String) {
        state.update { s in
            let held = s.byPeer[peer, default: 1] - 1
            s.byPeer[peer] = held > 0 ? held : nil
            s.open = max(0, s.open - 1)
        }
    }

    /// Open connections now (for tests and the metrics).
    var open: Int { state.value.open }

    /// The peer's address without its port: one host's connections share its limit.
    static func peer(_ address: SocketAddress?) -> String {
        address?.ipAddress ?? "?"
    }

    final class Handler: ChannelInboundHandler, RemovableChannelHandler, Sendable {
        typealias InboundIn = NIOAny
        let limiter: ConnectionLimiter
        private let admitted = LockedBox<String?>(nil)

        init(limiter: ConnectionLimiter) { self.limiter = limiter }

        // Decided once the connection is active (closing it while the pipeline is still being
        // set up would fail the setup instead).
        func channelActive(context: ChannelHandlerContext) {
            let peer = ConnectionLimiter.peer(context.channel.remoteAddress)
            guard limiter.admit(peer) else {
                context.close(promise: nil)
                return
            }
            admitted.value = peer
            context.fireChannelActive()
        }

        // Removed from the pipeline whenever the connection closes, however it closes.
        func handlerRemoved(context: ChannelHandlerContext) {
            if let peer = admitted.value {
                admitted.value = nil
                limiter.release(peer)
            }
        }
    }
}

extension ConnectionLimiter {
    /// The ceiling for HTTP connections when the configuration sets none: what the descriptor
    /// limit leaves after the registry, the stores, pilot connections and workers' pipes.
    static func defaultTotal(descriptorLimit: Int) -> Int {
        max(64, min(100_000, descriptorLimit - max(256, descriptorLimit / 4)))
    }
}
