import DLHubCore
import NIOCore
import Testing

@Suite struct PilotFrameTests {
    static let hello = PilotHello(
        credential: "MUNGE:abc", jobID: 42, node: "node1", cores: 4, memoryMB: 4000, gpus: 0, walltimeEnd: 1_800_000_000,
        pool: "cpu", slots: 4, nonce: PilotProof.random(), isolation: "bubblewrap")

    static let frames: [PilotFrame] = [
        .hello(hello),
        .welcome(PilotWelcome(session: 1, pool: "cpu", nonce: PilotProof.random(), proof: "ab")),
        .authenticate(proof: "cd"),
        .load(
            ServableSpec(
                key: "sha256:aa", digest: "sha256:aa", directory: "/r/x/y/1", metadata: ["dlhub": ["name": "y"]],
                environment: WorkerEnvironment(interpreter: "/envs/e1/bin/python", modules: ["gcc/12"], network: true))),
        .loaded(key: "sha256:aa", error: nil, log: "loading...\n"),
        .loaded(key: "sha256:aa", error: "missing Python packages: torch", log: ""),
        .unload(key: "sha256:aa"),
        .batch(
            Batch(
                id: 7, key: "sha256:aa", parameters: Array(#"{"k":1}"#.utf8), timeoutSeconds: 2.5,
                items: [
                    .init(id: 1, payload: Array("[1,2]".utf8)), .init(id: UInt64.max, payload: Array(#""é""#.utf8)),
                ])),
        .results(
            BatchResults(
                batchID: 7, items: [.init(id: 1, outcome: .output(Array("3".utf8))), .init(id: 2, outcome: .error("boom"))],
                log: "printed 3\n")),
        .heartbeat(["workers": 2]),
        .credit(slots: 0),
        .drain(reason: "walltime"),
        .bye(reason: "done", returned: [3, 4]),
        .returned(key: "sha256:k", batches: [5, UInt64.max]),
    ]

    @Test func everyFrameRoundTripsAndSplitsFromAStream() throws {
        var stream: [UInt8] = []
        for f in Self.frames { stream += f.encoded() }
        // Delivered in awkward pieces, as TCP may.
        var buffer = ByteBuffer()
        var decoded: [PilotFrame] = []
        var i = 0
        while i < stream.count {
            let n = min(7, stream.count - i)
            buffer.writeBytes(stream[i..<i + n])
            while let frame = try PilotFrame.next(from: &buffer) { decoded.append(frame) }
            i += n
        }
        #expect(decoded == Self.frames)
        #expect(buffer.readableBytes == 0)
    }

    @Test func payloadsTravelByteForByte() throws {
        let payload: [UInt8] = Array(#"[[5.1, 3.5], {"a": 1e-7}]"#.utf8)
        let bytes = PilotFrame.batch(Batch(id: 1, key: "k", parameters: [], timeoutSeconds: 1, items: [.init(id: 9, payload: payload)]))
            .encoded()
        guard case .batch(let b) = try PilotFrame.frames(in: bytes).first else { Issue.record("no batch"); return }
        #expect(b.items.first?.payload == payload)
    }

    @Test func corruptFramesAreErrorsNotCrashes() {
        #expect(throws: DLHubError.self) { try PilotFrame.frames(in: [0xFF, 0xFF, 0xFF, 0xFF, 1]) }
        #expect(throws: DLHubError.self) { try PilotFrame.frames(in: [0, 0, 0, 1, 99]) }
        #expect(throws: DLHubError.self) { try PilotFrame.frames(in: [0, 0, 0, 5, 6, 0, 0, 0, 1]) }
        // A job id beyond 32 bits is refused, not truncated into someone else's job.
        let hello = Array(#"{"credential":"x","job_id":4294967338,"nonce":"n"}"#.utf8)
        #expect(throws: DLHubError.self) { try PilotFrame.frames(in: [0, 0, 0, UInt8(hello.count + 1), 1] + hello) }
    }

    @Test func aFrameLargerThanTheLimitIsRefusedBeforeItArrives() {
        // Only the length prefix has come: the decision does not wait for (or buffer) the body.
        #expect(throws: DLHubError.self) { try PilotFrame.frames(in: [0, 1, 0, 0, 1], limit: 16 * 1024) }
    }

    @Test func helloFieldsAreBounded() {
        #expect(Self.hello.problem(now: 1_790_000_000) == nil)
        var h = Self.hello
        h.slots = 100_000
        #expect(h.problem(now: 1_790_000_000)?.contains("slots") == true)
        h = Self.hello
        h.cores = 0
        #expect(h.problem(now: 1_790_000_000) != nil)
        h = Self.hello
        h.node = "node1; rm -rf /"
        #expect(h.problem(now: 1_790_000_000) != nil)
        h = Self.hello
        h.nonce = "short"
        #expect(h.problem(now: 1_790_000_000) != nil)
        h = Self.hello
        h.memoryMB = -1
        #expect(h.problem(now: 1_790_000_000) != nil)
    }

    @Test func proofsBindTheSecretTheJobTheNodeAndBothNonces() {
        let secret = PilotProof.random(), p = PilotProof.random(), s = PilotProof.random()
        let proof = PilotProof.service(secret: secret, jobID: 7, node: "node1", pilotNonce: p, serviceNonce: s)
        #expect(PilotProof.matches(proof, PilotProof.service(secret: secret, jobID: 7, node: "node1", pilotNonce: p, serviceNonce: s)))
        #expect(
            !PilotProof.matches(
                proof, PilotProof.service(secret: PilotProof.random(), jobID: 7, node: "node1", pilotNonce: p, serviceNonce: s)))
        #expect(!PilotProof.matches(proof, PilotProof.service(secret: secret, jobID: 8, node: "node1", pilotNonce: p, serviceNonce: s)))
        #expect(!PilotProof.matches(proof, PilotProof.service(secret: secret, jobID: 7, node: "node2", pilotNonce: p, serviceNonce: s)))
        #expect(!PilotProof.matches(proof, PilotProof.service(secret: secret, jobID: 7, node: "node1", pilotNonce: s, serviceNonce: p)))
        // The pilot's proof is not the service's: one cannot be replayed as the other.
        #expect(!PilotProof.matches(proof, PilotProof.pilot(secret: secret, jobID: 7, node: "node1", pilotNonce: p, serviceNonce: s)))
        #expect(!PilotProof.matches("", ""))
    }
}
