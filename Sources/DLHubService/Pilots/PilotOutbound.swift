import DLHubCore
import NIOCore

/// Where the dispatcher's frames for one pilot go. In the service that is the pilot's socket,
/// written straight from the dispatcher (NIO hands the write to the connection's event loop, in
/// order), with no task in between to wake; in unit tests, a stream the test reads.
public struct PilotOutbound: Sendable {
    let deliver: @Sendable (PilotFrame) -> Void
    let close: @Sendable () -> Void

    /// Frames go to the pilot's connection; closing it ends the session's connection too.
    public static func channel(_ channel: any Channel) -> PilotOutbound {
        PilotOutbound(
            deliver: { channel.writeAndFlush($0, promise: nil) },
            close: { channel.close(promise: nil) })
    }

    /// Frames go to a stream (unit tests stand in for a pilot this way).
    public static func stream(_ continuation: AsyncStream<PilotFrame>.Continuation) -> PilotOutbound {
        PilotOutbound(deliver: { continuation.yield($0) }, close: { continuation.finish() })
    }

    func yield(_ frame: PilotFrame) { deliver(frame) }

    func finish() { close() }
}
