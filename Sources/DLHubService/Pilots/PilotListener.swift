import DLHubCluster
import DLHubCore
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Accepts pilot connections (pilots connect out from compute nodes), checks their hello, and
/// relays frames between each pilot and the dispatcher.
///
/// A pilot is accepted only when its munge credential was made by the service's own uid and
/// names a Slurm job the pilot manager submitted.
public final class PilotListener: Service, @unchecked Sendable {
    let host: String
    let port: Int
    let dispatcher: Dispatcher
    let isOurJob: @Sendable (UInt32) async -> Bool
    let munge: MungeCodec
    let logger: Logger
    private let boundPort = LockedBox<Int?>(nil)
    private let bound = AsyncStream<Int>.makeStream()

    public init(
        host: String, port: Int, dispatcher: Dispatcher, munge: MungeCodec = MungeCodec(), logger: Logger,
        isOurJob: @escaping @Sendable (UInt32) async -> Bool
    ) {
        self.host = host
        self.port = port
        self.dispatcher = dispatcher
        self.munge = munge
        self.logger = logger
        self.isOurJob = isOurJob
    }

    /// The port the listener bound (waits until it has).
    public func listeningPort() async -> Int {
        if let p = boundPort.value { return p }
        for await p in bound.stream { return p }
        return port
    }

    public func run() async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.so_keepalive), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        let actual = server.channel.localAddress?.port ?? port
        boundPort.value = actual
        bound.continuation.yield(actual)
        logger.info("pilot listener up", metadata: ["pilot.listen": "\(host):\(actual)"])
        try await withGracefulShutdownHandler {
            try await server.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in inbound {
                        group.addTask { await self.serve(connection) }
                    }
                }
            }
        } onGracefulShutdown: {
            server.channel.close(promise: nil)
        }
    }

    func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async {
        let remote = connection.channel.remoteAddress.map { "\($0)" } ?? "?"
        do {
            try await connection.executeThenClose { inbound, writer in
                var iterator = inbound.makeAsyncIterator()
                var buffer: [UInt8] = []
                var pending: [PilotFrame] = []
                // The first frame must be a valid hello.
                while pending.isEmpty {
                    guard let chunk = try await iterator.next() else { return }
                    buffer += Array(buffer: chunk)
                    pending = try PilotFrame.split(&buffer)
                }
                guard case .hello(let hello) = pending.removeFirst() else {
                    logger.warning("pilot connection without hello", metadata: ["remote": "\(remote)"])
                    return
                }
                if let refusal = await check(hello) {
                    logger.warning(
                        "pilot refused", metadata: ["remote": "\(remote)", "slurm.job_id": "\(hello.jobID)", "reason": "\(refusal)"])
                    try await writer.write(ByteBuffer(bytes: PilotFrame.drain(reason: "refused: \(refusal)").encoded()))
                    return
                }
                let (outbound, continuation) = AsyncStream.makeStream(of: PilotFrame.self)
                let session = await dispatcher.attach(hello: hello, outbound: continuation)
                await withTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for await frame in outbound {
                            do { try await writer.write(ByteBuffer(bytes: frame.encoded())) } catch { break }
                        }
                    }
                    do {
                        for frame in pending { await dispatcher.received(frame, from: session) }
                        while let chunk = try await iterator.next() {
                            buffer += Array(buffer: chunk)
                            for frame in try PilotFrame.split(&buffer) { await dispatcher.received(frame, from: session) }
                        }
                        await dispatcher.detach(session, reason: "connection closed")
                    } catch {
                        await dispatcher.detach(session, reason: "connection error: \(error)")
                    }
                    continuation.finish()
                    group.cancelAll()
                }
            }
        } catch {
            logger.warning("pilot connection failed", metadata: ["remote": "\(remote)", "error": "\(error)"])
        }
    }

    /// Nil when the hello is acceptable, else why not.
    func check(_ hello: PilotHello) async -> String? {
        let identity: MungeIdentity
        do { identity = try munge.decode(hello.credential) } catch { return "munge: \(error.message)" }
        guard identity.uid == getuid() else { return "the pilot runs as uid \(identity.uid), not the service's uid \(getuid())" }
        guard String(decoding: identity.payload, as: UTF8.self) == String(hello.jobID) else {
            return "the credential does not name job \(hello.jobID)"
        }
        guard await isOurJob(hello.jobID) else { return "job \(hello.jobID) was not submitted by this service" }
        return nil
    }
}

/// A value shared between the listener's run loop and callers; set once.
final class LockedBox<T: Sendable>: @unchecked Sendable {
    private var stored: T
    private let lock = NSLock()
    init(_ value: T) { stored = value }
    var value: T {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); stored = newValue; lock.unlock() }
    }
}
