import DLHubCluster
import DLHubCore
import Foundation
import Logging
import NIOCore
import NIOPosix

/// The pilot's connection to `dlhubd`: it connects out (nodes reach the service, not the other
/// way), says hello with a munge credential, makes the service prove it is the one that
/// submitted this job before taking anything from it, proves itself in turn (`PilotProof`), then
/// relays frames between the service and the `PilotAgent` until it is drained, told to leave, or
/// loses the service.
public struct PilotClient: Sendable {
    public struct Options: Sendable {
        public var host: String
        public var port: Int
        public var pool: String
        public var jobID: UInt32
        public var node: String
        public var gpus: Int
        public var walltimeEnd: Int64
        /// The job's secret, from its environment (`PilotProof.environmentVariable`).
        public var secret: String
        public var heartbeatSeconds: Double = 5
        /// On Slurm's walltime warning, drain this many seconds before the end (not at once).
        public var selfDrainLeadSeconds: Double = 8
        /// How long the service has to prove itself.
        public var handshakeSeconds: Double = 30
        public var frameLimit = PilotFrame.maximumLength
        public var settings: PilotAgent.Settings

        public init(
            host: String, port: Int, pool: String, jobID: UInt32, node: String, gpus: Int, walltimeEnd: Int64, secret: String,
            settings: PilotAgent.Settings
        ) {
            self.host = host
            self.port = port
            self.pool = pool
            self.jobID = jobID
            self.node = node
            self.gpus = gpus
            self.walltimeEnd = walltimeEnd
            self.secret = secret
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
    /// that the walltime is ending (or the job is being cancelled). Throws when the peer is not
    /// the service that submitted this job.
    public func run(signals: AsyncStream<Int32>) async throws {
        let connection = try await connect()
        let (outbound, outboundContinuation) = AsyncStream.makeStream(of: PilotFrame.self)
        let agent = PilotAgent(settings: options.settings, logger: logger) { frame in outboundContinuation.yield(frame) }
        let isolation = agent.isolation
        if case .unavailable = isolation {
            logger.error("the worker sandbox does not work on this node; workers will not start", metadata: ["isolation": "\(isolation)"])
        } else if isolation == .available(.none) {
            logger.warning("workers run without a sandbox (isolation: none): any servable acts with the service account's rights")
        }
        let credential = try MungeCodec().encode(payload: Array(String(options.jobID).utf8))
        let nonce = PilotProof.random()
        let hello = PilotHello(
            credential: credential, jobID: options.jobID, node: options.node, cores: options.settings.cores,
            memoryMB: options.settings.memoryMB, gpus: options.gpus, walltimeEnd: options.walltimeEnd, pool: options.pool,
            slots: await agent.slots, nonce: nonce, isolation: isolation.description)
        let channel = connection.channel
        let deadline = channel.eventLoop.scheduleTask(in: .milliseconds(Int64(options.handshakeSeconds * 1000))) {
            channel.close(promise: nil)
        }

        try await connection.executeThenClose { inbound, writer in
            var iterator = inbound.makeAsyncIterator()
            try await writer.write(.hello(hello))
            // Nothing is taken from the peer until it proves it is the service that submitted this job.
            let first: PilotFrame?
            do { first = try await iterator.next() } catch {
                throw DLHubError(.unauthenticated, "the service did not complete the handshake: \(error)")
            }
            let welcome: PilotWelcome
            switch first {
            case .welcome(let w)?:
                welcome = w
            case .drain(let reason)?:
                throw DLHubError(.unauthenticated, "the service refused this pilot: \(reason)")
            case let other?:
                throw DLHubError(
                    .unauthenticated,
                    "refusing the peer at \(options.host):\(options.port): it sent a \(other.name) frame before proving it is the service that submitted job \(options.jobID)"
                )
            case nil:
                throw DLHubError(.unavailable, "the service closed the connection during the handshake")
            }
            let expected = PilotProof.service(
                secret: options.secret, jobID: options.jobID, node: options.node, pilotNonce: nonce, serviceNonce: welcome.nonce)
            guard PilotProof.isWellFormed(welcome.nonce), PilotProof.matches(welcome.proof, expected) else {
                throw DLHubError(
                    .unauthenticated,
                    "refusing the peer at \(options.host):\(options.port): it could not prove it is the service that submitted job \(options.jobID)"
                )
            }
            try await writer.write(
                .authenticate(
                    proof: PilotProof.pilot(
                        secret: options.secret, jobID: options.jobID, node: options.node, pilotNonce: nonce, serviceNonce: welcome.nonce)))
            deadline.cancel()
            await agent.setFrameLimit(welcome.frameLimit)
            logger.info("connected to the service", metadata: ["session": "\(welcome.session)"])
            await serve(
                agent: agent, inbound: &iterator, writer: writer, outbound: outbound, heartbeat: outboundContinuation, signals: signals,
                channel: channel)
        }
        await agent.shutdown()
    }

    /// After the handshake: frames both ways, Slurm's signals and heartbeats, until the writer
    /// has sent `bye` or the service goes away.
    func serve(
        agent: PilotAgent, inbound: inout NIOAsyncChannelInboundStream<PilotFrame>.AsyncIterator,
        writer: NIOAsyncChannelOutboundWriter<PilotFrame>, outbound: AsyncStream<PilotFrame>,
        heartbeat: AsyncStream<PilotFrame>.Continuation, signals: AsyncStream<Int32>, channel: any Channel
    ) async {
        let options = self.options, logger = self.logger
        await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await frame in outbound {
                    try await writer.write(frame)
                    if case .bye = frame { break }
                }
                // Said goodbye (or the agent is gone): closing ends the read loop below.
                channel.close(promise: nil)
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
                    heartbeat.yield(.heartbeat(await agent.status()))
                }
            }
            do {
                while let frame = try await inbound.next() {
                    switch frame {
                    case .drain, .load:
                        // A drain waits for running batches, a load for a worker to start: neither
                        // may hold up the frames behind it (batches of other servables).
                        Task { await agent.handle(frame) }
                    default:
                        await agent.handle(frame)
                    }
                }
            } catch {
                logger.warning("connection to the service ended", metadata: ["error": "\(error)"])
            }
            group.cancelAll()
        }
    }

    func connect() async throws -> NIOAsyncChannel<PilotFrame, PilotFrame> {
        var lastError: (any Error)?
        let limit = options.frameLimit
        for attempt in 0..<30 {
            do {
                return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .channelOption(.socketOption(.so_keepalive), value: 1)
                    .connect(host: options.host, port: options.port) { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandlers(
                                ByteToMessageHandler(PilotFrameDecoder(limit: limit, handshakeFrames: 1)),
                                MessageToByteHandler(PilotFrameEncoder()))
                            return try NIOAsyncChannel<PilotFrame, PilotFrame>(wrappingChannelSynchronously: channel)
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
