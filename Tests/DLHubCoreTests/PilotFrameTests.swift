import DLHubCore
import Testing

@Suite struct PilotFrameTests {
    static let frames: [PilotFrame] = [
        .hello(
            PilotHello(
                credential: "MUNGE:abc", jobID: 42, node: "node1", cores: 4, memoryMB: 4000, gpus: 0, walltimeEnd: 1_800_000_000,
                pool: "cpu", slots: 4)),
        .welcome(["session": 1]),
        .load(ServableSpec(key: "sha256:aa", digest: "sha256:aa", directory: "/r/x/y/1", metadata: ["dlhub": ["name": "y"]])),
        .loaded(key: "sha256:aa", error: nil),
        .loaded(key: "sha256:aa", error: "missing Python packages: torch"),
        .unload(key: "sha256:aa"),
        .batch(
            Batch(
                id: 7, key: "sha256:aa", parameters: Array(#"{"k":1}"#.utf8), timeoutSeconds: 2.5,
                items: [
                    .init(id: 1, payload: Array("[1,2]".utf8)), .init(id: UInt64.max, payload: Array(#""é""#.utf8)),
                ])),
        .results(
            BatchResults(batchID: 7, items: [.init(id: 1, outcome: .output(Array("3".utf8))), .init(id: 2, outcome: .error("boom"))])),
        .heartbeat(["workers": 2]),
        .credit(slots: 0),
        .drain(reason: "walltime"),
        .bye(reason: "done", returned: [3, 4]),
    ]

    @Test func everyFrameRoundTripsAndSplitsFromAStream() throws {
        var stream: [UInt8] = []
        for f in Self.frames { stream += f.encoded() }
        // Delivered in awkward pieces, as TCP may.
        var buffer: [UInt8] = []
        var decoded: [PilotFrame] = []
        var i = 0
        while i < stream.count {
            let n = min(7, stream.count - i)
            buffer += stream[i..<i + n]
            decoded += try PilotFrame.split(&buffer)
            i += n
        }
        #expect(decoded == Self.frames)
        #expect(buffer.isEmpty)
    }

    @Test func payloadsTravelByteForByte() throws {
        let payload: [UInt8] = Array(#"[[5.1, 3.5], {"a": 1e-7}]"#.utf8)
        var buffer = PilotFrame.batch(Batch(id: 1, key: "k", parameters: [], timeoutSeconds: 1, items: [.init(id: 9, payload: payload)]))
            .encoded()
        guard case .batch(let b) = try PilotFrame.split(&buffer).first else { Issue.record("no batch"); return }
        #expect(b.items.first?.payload == payload)
    }

    @Test func corruptFramesAreErrorsNotCrashes() {
        var huge: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 1]
        #expect(throws: DLHubError.self) { try PilotFrame.split(&huge) }
        var unknown: [UInt8] = [0, 0, 0, 1, 99]
        #expect(throws: DLHubError.self) { try PilotFrame.split(&unknown) }
        var truncatedBatch: [UInt8] = [0, 0, 0, 5, 6, 0, 0, 0, 1]
        #expect(throws: DLHubError.self) { try PilotFrame.split(&truncatedBatch) }
    }
}
