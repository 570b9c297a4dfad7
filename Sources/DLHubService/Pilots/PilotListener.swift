import DLHubCluster
import DLHubCore
import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Accepts pilot connections (pilots connect out from compute nodes), runs the mutual proof
/// (`PilotProof`), then relays frames between each pilot and the dispatcher.
///
/// Before the proof a connection is a stranger: it must send its hello within a few seconds and a
/// few KiB, and only so many strangers may wait at once. A pilot is accepted only when its munge
/// credential was made by the service's own uid and names a Slurm job the pilot manager submitted
/// and still tracks, its hello is within bounds, no other session holds that job's node, and it
/// proves it holds the secret its job was given.
public final class PilotListener: Service, @unchecked Sendable {
    /// What the listener needs to know about a job that says hello.
    public struct Job: Sendable {
        public var secret: String
        public var pool: String
        public init(secret: String, pool: String) {
            self.secret = secret
            self.pool = pool
        }
    }

    public struct Limits: Sendable {
        /// Seconds a new connection has to complete the handshake.
        public var handshakeSeconds: Double = 5
        /// Largest handshake frame.
        public var handshakeBytes = 16 * 1024
        /// Connections allowed to wait for their hello at once; a newcomer pushes out the one
        /// that waited longest. As many again may be having their credential checked.
        public var strangers = 64
        /// Largest frame once authenticated.
        public var frameBytes = PilotFrame.maximumLength
        public init() {}
    }

    let host: String
    let port: Int
    let dispatcher: Dispatcher
    let job: @Sendable (UInt32) async -> Job?
    let munge: MungeCodec
    let limits: Limits
    let logger: Logger
    private let boundPort = LockedBox<Int?>(nil)
    private let bound = AsyncStream<Int>.makeStream()
    /// Connections still in their handshake, and their channels (to close one pushed out).
    private let strangers: LockedBox<Strangers>
    struct Strangers: Sendable {
        var table: StrangerTable<ObjectIdentifier>
        var channels: [ObjectIdentifier: any Channel] = [:]
    }
    let droppedStrangers = Counter(label: "dlhub_pilot_strangers_dropped_total")
    /// When a drop was last logged: a flood is logged once a second, not once per connection.
    private let lastDropLog = LockedBox<UInt64>(0)

    func shouldLogDrop() -> Bool {
        let now = DispatchTime.now().uptimeNanoseconds
        return lastDropLog.update { last in
            guard now &- last > 1_000_000_000 else { return false }
            last = now
            return true
        }
    }
    private let connected = LockedBox<Set<String>>([])
    /// Every open pilot connection, closed when the service stops (a pilot kept for the next
    /// start would otherwise hold its connection, and the stop, open).
    private let open = LockedBox<[ObjectIdentifier: any Channel]>([:])

    public init(
        host: String, port: Int, dispatcher: Dispatcher, munge: MungeCodec = MungeCodec(), limits: Limits = Limits(), logger: Logger,
        job: @escaping @Sendable (UInt32) async -> Job?
    ) {
        self.host = host
        self.port = port
        self.dispatcher = dispatcher
        self.munge = munge
        self.limits = limits
        self.logger = logger
        self.job = job
        strangers = LockedBox(Strangers(table: StrangerTable(silentLimit: limits.strangers, provingLimit: limits.strangers)))
    }

    /// The port the listener bound (waits until it has).
    public func listeningPort() async -> Int {
        if let p = boundPort.value { return p }
        for await p in bound.stream { return p }
        return port
    }

    public func run() async throws {
        let limits = self.limits
        // Pilot connections live on the dispatcher's event loop (see `Dispatcher.eventLoop`).
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton, childGroup: dispatcher.eventLoop)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.so_keepalive), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(
                            PilotFrameDecoder(limit: limits.frameBytes, handshakeFrames: 2, handshakeLimit: limits.handshakeBytes)),
                        MessageToByteHandler(PilotFrameEncoder()))
                    return try NIOAsyncChannel<PilotFrame, PilotFrame>(wrappingChannelSynchronously: channel)
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
        } onGracefulShutdown: { [open] in
            server.channel.close(promise: nil)
            for channel in open.value.values { channel.close(promise: nil) }
        }
    }

    func serve(_ connection: NIOAsyncChannel<PilotFrame, PilotFrame>) async {
        let remote = connection.channel.remoteAddress.map { "\($0)" } ?? "?"
        let channel = connection.channel
        let id = ObjectIdentifier(channel)
        // A newcomer pushes out the stranger that has waited longest without a hello.
        let evicted = strangers.update { table -> [any Channel] in
            let out = table.table.arrive(id).compactMap { table.channels.removeValue(forKey: $0) }
            table.channels[id] = channel
            return out
        }
        for old in evicted { old.close(promise: nil) }
        if !evicted.isEmpty {
            droppedStrangers.increment(by: evicted.count)
            if shouldLogDrop() {
                logger.warning(
                    "pilot connection dropped: too many connections without a hello; the oldest silent ones make room",
                    metadata: ["remote": "\(remote)", "dropped": "\(evicted.count)"])
            }
        }
        var stranger = true
        func leave() {
            guard stranger else { return }
            stranger = false
            strangers.update { table in
                table.table.leave(id)
                table.channels.removeValue(forKey: id)
            }
        }
        defer { leave() }
        open.update { $0[id] = channel }
        defer { open.update { $0.removeValue(forKey: id) } }
        // A stranger that does not finish its handshake in time is cut off.
        let deadline = channel.eventLoop.scheduleTask(in: .milliseconds(Int64(limits.handshakeSeconds * 1000))) {
            channel.close(promise: nil)
        }
        defer { deadline.cancel() }
        do {
            // Every connection goes through executeThenClose, even one refused at once: its
            // writer must be finished (an NIOAsyncChannel dropped without it ends the process).
            try await connection.executeThenClose { inbound, writer in
                var iterator = inbound.makeAsyncIterator()
                guard case .hello(let hello)? = try await iterator.next() else {
                    logger.debug("pilot connection without hello", metadata: ["remote": "\(remote)"])
                    return
                }
                let proving = strangers.update { table -> Bool in table.table.heardHello(id) }
                guard proving else {
                    logger.warning("pilot refused: too many connections proving themselves at once", metadata: ["remote": "\(remote)"])
                    return
                }
                guard let job = await admit(hello, remote: remote) else {
                    try await writer.write(.drain(reason: "refused"))
                    return
                }
                let sessionKey = "\(hello.jobID)/\(hello.node)"
                guard connected.update({ $0.insert(sessionKey).inserted }) else {
                    logger.warning(
                        "pilot refused",
                        metadata: ["remote": "\(remote)", "slurm.job_id": "\(hello.jobID)", "reason": "a session for this node exists"])
                    try await writer.write(.drain(reason: "refused: this job's pilot on \(hello.node) is already connected"))
                    return
                }
                defer { connected.update { $0.remove(sessionKey) } }
                let serviceNonce = PilotProof.random()
                let session = await dispatcher.reserveSessionID()
                try await writer.write(
                    .welcome(
                        PilotWelcome(
                            session: session, pool: job.pool, nonce: serviceNonce,
                            proof: PilotProof.service(
                                secret: job.secret, jobID: hello.jobID, node: hello.node, pilotNonce: hello.nonce,
                                serviceNonce: serviceNonce),
                            frameLimit: limits.frameBytes)))
                guard case .authenticate(let proof)? = try await iterator.next(),
                    PilotProof.matches(
                        proof,
                        PilotProof.pilot(
                            secret: job.secret, jobID: hello.jobID, node: hello.node, pilotNonce: hello.nonce, serviceNonce: serviceNonce))
                else {
                    logger.warning(
                        "pilot refused",
                        metadata: [
                            "remote": "\(remote)", "slurm.job_id": "\(hello.jobID)",
                            "reason": "it could not prove it holds the job's secret",
                        ])
                    try? await writer.write(.drain(reason: "refused"))
                    return
                }
                deadline.cancel()
                leave()
                await relay(session: session, hello: hello, inbound: &iterator, channel: channel)
            }
        } catch {
            logger.warning("pilot connection failed", metadata: ["remote": "\(remote)", "error": "\(error)"])
        }
    }

    /// Frames from an authenticated pilot to the dispatcher until its connection ends (the
    /// dispatcher writes to the pilot itself, see `PilotOutbound`).
    func relay(
        session: Int, hello: PilotHello, inbound: inout NIOAsyncChannelInboundStream<PilotFrame>.AsyncIterator,
        channel: any Channel
    ) async {
        let handedOver = HandedOver(inbound)
        await Self.relay(session: session, hello: hello, inbound: handedOver, channel: channel, dispatcher: dispatcher)
    }

    /// The read loop runs on the dispatcher (its event loop, the connection's): each frame is
    /// handed over where it was read, with no thread in between.
    static func relay(
        session: Int, hello: PilotHello, inbound: HandedOver<NIOAsyncChannelInboundStream<PilotFrame>.AsyncIterator>,
        channel: any Channel, dispatcher: isolated Dispatcher
    ) async {
        dispatcher.attach(session: session, hello: hello, outbound: .channel(channel))
        do {
            while let frame = try await inbound.value.next() {
                if let refusal = await dispatcher.received(frame, from: session) {
                    await dispatcher.detach(session, reason: "protocol violation: \(refusal)")
                    return
                }
            }
            await dispatcher.detach(session, reason: "connection closed")
        } catch {
            await dispatcher.detach(session, reason: "connection error: \(error)")
        }
    }

    /// The job a hello claims, when every check passes; nil (logged) otherwise.
    func admit(_ hello: PilotHello, remote: String) async -> Job? {
        func refuse(_ reason: String) -> Job? {
            logger.warning("pilot refused", metadata: ["remote": "\(remote)", "slurm.job_id": "\(hello.jobID)", "reason": "\(reason)"])
            return nil
        }
        if let problem = hello.problem(now: Int64(Date().timeIntervalSince1970)) { return refuse("bad hello: \(problem)") }
        let identity: MungeIdentity
        do {
            let codec = munge
            let credential = hello.credential
            identity = try await BlockingIO.run { () throws(DLHubError) in
                do throws(MungeError) { return try codec.decode(credential) } catch { throw error.asDLHubError }
            }
        } catch {
            return refuse("munge: \(error.message)")
        }
        guard identity.uid == getuid() else { return refuse("the pilot runs as uid \(identity.uid), not the service's uid \(getuid())") }
        guard String(decoding: identity.payload, as: UTF8.self) == String(hello.jobID) else {
            return refuse("the credential does not name job \(hello.jobID)")
        }
        guard let job = await job(hello.jobID) else { return refuse("job \(hello.jobID) was not submitted by this service, or has ended") }
        guard job.pool == hello.pool else { return refuse("job \(hello.jobID) belongs to pool \(job.pool), not \(hello.pool)") }
        return job
    }
}

/// A value handed from one task's code to code it awaits, never used by both at once (the
/// connection's read iterator, handed from the handshake to the dispatcher's read loop).
final class HandedOver<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}
