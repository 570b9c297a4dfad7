import DLHubCluster
import DLHubCore
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

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
        /// Where the service writes its pilot address (`HOST:PORT`), re-read before each
        /// reconnection: the port may change when the service restarts.
        public var serviceFile: String?
        /// How long a pilot that lost its service keeps its workers and tries to reconnect;
        /// 0 ends the pilot at once.
        public var reconnectGraceSeconds: Double = 0

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
    ///
    /// When the connection to a service that had accepted this pilot is lost (the service
    /// restarted or crashed), the pilot keeps its workers and connects again, re-reading the
    /// service's address, for `reconnectGraceSeconds`; then it gives up and ends.
    public func run(signals: AsyncStream<Int32>) async throws {
        let relay = Relay()
        let agent = PilotAgent(settings: options.settings, logger: logger) { frame in relay.send(frame) }
        let isolation = agent.isolation
        if case .unavailable = isolation {
            logger.error("the worker sandbox does not work on this node; workers will not start", metadata: ["isolation": "\(isolation)"])
        } else if isolation == .available(.none) {
            logger.warning("workers run without a sandbox (isolation: none): any servable acts with the service account's rights")
        }
        let stopping = Flag()
        let options = self.options, logger = self.logger
        // Slurm's signals, for the pilot's whole life (across reconnections).
        let signalHandler = Task {
            for await signal in signals {
                if signal == SIGUSR1 {
                    // Slurm may send the walltime warning up to a minute early: keep serving until
                    // shortly before the end (dlhubd drains the pilot itself once its replacement is up).
                    let wait = Double(options.walltimeEnd) - Date().timeIntervalSince1970 - options.selfDrainLeadSeconds
                    logger.info("walltime warning received", metadata: ["drain_in_s": "\(Int(max(0, wait)))"])
                    Task {
                        if wait > 0 { try? await Task.sleep(for: .seconds(wait)) }
                        stopping.value = true
                        await agent.beginDrain(reason: "walltime ending")
                    }
                } else {
                    logger.info("signal received: draining", metadata: ["signal": "\(signal)"])
                    stopping.value = true
                    await agent.beginDrain(reason: "signal \(signal)")
                }
            }
        }
        defer { signalHandler.cancel() }

        var reconnectBy: Date?
        while true {
            let connection: NIOAsyncChannel<PilotFrame, PilotFrame>
            if let deadline = reconnectBy {
                guard !stopping.value, await !agent.draining else { break }
                guard Date() < deadline else {
                    logger.warning(
                        "the service did not come back within the reconnect grace period; ending",
                        metadata: ["grace_s": "\(Int(options.reconnectGraceSeconds))"])
                    break
                }
                let (host, port) = serviceAddress()
                do { connection = try await connectOnce(host: host, port: port) } catch {
                    try? await Task.sleep(for: .seconds(1))
                    continue
                }
            } else {
                connection = try await connect()
            }
            let outcome: Outcome
            do {
                outcome = try await session(connection, agent: agent, relay: relay)
            } catch let error as DLHubError where reconnectBy != nil {
                // A service still starting (or not yet tracking this job) and a peer that cannot
                // prove itself are both tried again until the grace period ends.
                logger.warning("reconnection refused; trying again", metadata: ["error": "\(error.message)"])
                try? await Task.sleep(for: .seconds(2))
                continue
            }
            if case .finished = outcome { break }
            guard options.reconnectGraceSeconds > 0, !stopping.value, await !agent.draining else { break }
            await agent.disconnected()
            reconnectBy = Date().addingTimeInterval(options.reconnectGraceSeconds)
            logger.warning(
                "lost the service; keeping the workers and reconnecting",
                metadata: ["grace_s": "\(Int(options.reconnectGraceSeconds))"])
        }
        await agent.shutdown()
    }

    /// How a session with the service ended.
    enum Outcome {
        /// The pilot said goodbye (drained, or told to leave).
        case finished
        /// The connection ended without a goodbye (the service went away).
        case lost
    }

    /// Where to reach the service: the address it last wrote to `serviceFile` (when that file
    /// is the service account's own and nobody else may write it), else `--service`.
    func serviceAddress() -> (String, Int) {
        if let path = options.serviceFile, let address = Self.readServiceFile(path) { return address }
        return (options.host, options.port)
    }

    /// The address in a service file, when the file may be trusted: a regular file of this
    /// account that nobody else can write, holding `HOST:PORT`.
    public static func readServiceFile(_ path: String) -> (String, Int)? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_uid == getuid(), st.st_mode & 0o022 == 0,
            st.st_size < 1024, let data = FileManager.default.contents(atPath: path)
        else { return nil }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else {
            return nil
        }
        let host = String(text[..<colon])
        guard !host.isEmpty, host.utf8.count < 256 else { return nil }
        return (host, port)
    }

    /// One connection: the handshake, then frames until it ends.
    func session(_ connection: NIOAsyncChannel<PilotFrame, PilotFrame>, agent: PilotAgent, relay: Relay) async throws -> Outcome {
        let options = self.options, logger = self.logger
        let credential = try MungeCodec().encode(payload: Array(String(options.jobID).utf8))
        let nonce = PilotProof.random()
        let hello = PilotHello(
            credential: credential, jobID: options.jobID, node: options.node, cores: options.settings.cores,
            memoryMB: options.settings.memoryMB, gpus: options.gpus, walltimeEnd: options.walltimeEnd, pool: options.pool,
            slots: await agent.slots, nonce: nonce, isolation: agent.isolation.description, resident: await agent.residentKeys)
        let channel = connection.channel
        let deadline = channel.eventLoop.scheduleTask(in: .milliseconds(Int64(options.handshakeSeconds * 1000))) {
            channel.close(promise: nil)
        }
        return try await connection.executeThenClose { inbound, writer in
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
            logger.info(
                "connected to the service", metadata: ["session": "\(welcome.session)", "resident": "\(hello.resident.count)"])
            relay.attach(channel)
            await serve(agent: agent, inbound: &iterator, relay: relay)
            relay.detach()
            return await agent.draining ? .finished : .lost
        }
    }

    /// After the handshake: frames from the service to the agent (the agent writes its own
    /// straight to the socket through `relay`) and heartbeats, until the pilot has said `bye`
    /// (which closes the connection) or the service goes away.
    func serve(agent: PilotAgent, inbound: inout NIOAsyncChannelInboundStream<PilotFrame>.AsyncIterator, relay: Relay) async {
        let options = self.options, logger = self.logger
        let heartbeat = Task {
            while !Task.isCancelled {
                try await Task.sleep(for: .seconds(options.heartbeatSeconds))
                relay.send(.heartbeat(await agent.status()))
            }
        }
        defer { heartbeat.cancel() }
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
    }

    /// One attempt to reach the service.
    func connectOnce(host: String, port: Int) async throws -> NIOAsyncChannel<PilotFrame, PilotFrame> {
        let limit = options.frameLimit
        return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .connectTimeout(.seconds(5))
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(PilotFrameDecoder(limit: limit, handshakeFrames: 1)),
                        MessageToByteHandler(PilotFrameEncoder()))
                    return try NIOAsyncChannel<PilotFrame, PilotFrame>(wrappingChannelSynchronously: channel)
                }
            }
    }

    /// The first connection: the service may still be starting, so it is tried for a while.
    func connect() async throws -> NIOAsyncChannel<PilotFrame, PilotFrame> {
        var lastError: (any Error)?
        for attempt in 0..<30 {
            do {
                return try await connectOnce(host: options.host, port: options.port)
            } catch {
                lastError = error
                logger.warning("cannot reach the service yet", metadata: ["attempt": "\(attempt)", "error": "\(error)"])
                try await Task.sleep(for: .seconds(min(10, 1 + Double(attempt))))
            }
        }
        throw DLHubError(.unavailable, "cannot reach dlhubd at \(options.host):\(options.port): \(String(describing: lastError))")
    }
}

/// Where the agent's frames go: the current connection, or nowhere while there is none. Frames
/// are written to the socket directly (NIO hands each write to the connection's event loop, in
/// order); after `bye` the connection is closed once the goodbye is out.
final class Relay: Sendable {
    private let current = Mutex<(any Channel)?>(nil)

    func attach(_ channel: any Channel) { current.withLock { $0 = channel } }

    func detach() { current.withLock { $0 = nil } }

    func send(_ frame: PilotFrame) {
        guard let channel = current.withLock({ $0 }) else { return }
        let written = channel.writeAndFlush(frame)
        if case .bye = frame { written.whenComplete { _ in channel.close(promise: nil) } }
    }
}

/// A flag shared between tasks.
final class Flag: Sendable {
    private let state = Mutex(false)
    var value: Bool {
        get { state.withLock { $0 } }
        set { state.withLock { $0 = newValue } }
    }
}
