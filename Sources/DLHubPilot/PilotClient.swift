import DLHubCluster
import DLHubCore
import Foundation
import Logging
import NIOCore
import NIOPosix

/// The pilot's connection to `dlhubd`: it connects out (nodes reach the service, not the other
/// way), says hello with a munge credential, then relays frames between the service and the
/// `PilotAgent` until it is drained, told to leave, or loses the service.
public struct PilotClient: Sendable {
    public struct Options: Sendable {
        public var host: String
        public var port: Int
        public var pool: String
        public var jobID: UInt32
        public var node: String
        public var gpus: Int
        public var walltimeEnd: Int64
        public var heartbeatSeconds: Double = 5
        /// On Slurm's walltime warning, drain this many seconds before the end (not at once).
        public var selfDrainLeadSeconds: Double = 8
        public var settings: PilotAgent.Settings

        public init(
            host: String, port: Int, pool: String, jobID: UInt32, node: String, gpus: Int, walltimeEnd: Int64, settings: PilotAgent.Settings
        ) {
            self.host = host
            self.port = port
            self.pool = pool
            self.jobID = jobID
            self.node = node
            self.gpus = gpus
            self.walltimeEnd = walltimeEnd
            self.settings = settings
        }
    }

    let options: Options
    let logger: Logger

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// Runs until the service says goodbye or drains the pilot; `signals` yields when Slurm warns
    /// that the walltime is ending (or the job is being cancelled).
    public func run(signals: AsyncStream<Int32>) async throws {
        let channel = try await connect()
        let (outbound, outboundContinuation) = AsyncStream.makeStream(of: PilotFrame.self)
        let agent = PilotAgent(settings: options.settings, logger: logger) { frame in outboundContinuation.yield(frame) }
        let credential = try MungeCodec().encode(payload: Array(String(options.jobID).utf8))
        let hello = PilotHello(
            credential: credential, jobID: options.jobID, node: options.node, cores: options.settings.cores,
            memoryMB: options.settings.memoryMB, gpus: options.gpus, walltimeEnd: options.walltimeEnd, pool: options.pool,
            slots: await agent.slots)
        outboundContinuation.yield(.hello(hello))

        try await channel.executeThenClose { inbound, writer in
            await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await frame in outbound {
                        try await writer.write(ByteBuffer(bytes: frame.encoded()))
                        if case .bye = frame { return }
                    }
                }
                group.addTask {
                    var buffer: [UInt8] = []
                    for try await chunk in inbound {
                        buffer += Array(buffer: chunk)
                        for frame in try PilotFrame.split(&buffer) {
                            if case .drain = frame {
                                Task { await agent.handle(frame) }
                            } else {
                                await agent.handle(frame)
                            }
                        }
                    }
                    throw DLHubError(.unavailable, "the service closed the connection")
                }
                group.addTask {
                    for await signal in signals {
                        if signal == SIGUSR1 {
                            // Slurm may send the walltime warning up to a minute early: keep serving until
                            // shortly before the end (dlhubd drains the pilot itself once its replacement is up).
                            let wait = Double(options.walltimeEnd) - Date().timeIntervalSince1970 - options.selfDrainLeadSeconds
                            logger.info("walltime warning received", metadata: ["drain_in_s": "\(Int(max(0, wait)))"])
                            Task {
                                if wait > 0 { try? await Task.sleep(for: .seconds(wait)) }
                                await agent.beginDrain(reason: "walltime ending")
                            }
                        } else {
                            logger.info("signal received: draining", metadata: ["signal": "\(signal)"])
                            await agent.beginDrain(reason: "signal \(signal)")
                        }
                    }
                }
                group.addTask {
                    while !Task.isCancelled {
                        try await Task.sleep(for: .seconds(options.heartbeatSeconds))
                        outboundContinuation.yield(.heartbeat(await agent.status()))
                    }
                }
                // The writer finishing (after bye) or the service leaving ends the pilot.
                do {
                    try await group.next()
                } catch {
                    logger.warning("connection to the service ended", metadata: ["error": "\(error)"])
                }
                group.cancelAll()
            }
        }
        await agent.shutdown()
    }

    func connect() async throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
        var lastError: (any Error)?
        for attempt in 0..<30 {
            do {
                return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .channelOption(.socketOption(.so_keepalive), value: 1)
                    .connect(host: options.host, port: options.port) { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                        }
                    }
            } catch {
                lastError = error
                logger.warning("cannot reach the service yet", metadata: ["attempt": "\(attempt)", "error": "\(error)"])
                try await Task.sleep(for: .seconds(min(10, 1 + Double(attempt))))
            }
        }
        throw DLHubError(.unavailable, "cannot reach dlhubd at \(options.host):\(options.port): \(String(describing: lastError))")
    }
}
