import DLHubCore
import DLHubService
import DLHubTesting
import Foundation
import Logging
import Testing

/// The dispatcher's bookkeeping with pilots played by the test (no sockets, real SQLite store).
@Suite struct DispatcherTests {
    let dir: TemporaryDirectory
    let store: TaskStore
    let waiters = TaskWaiters()
    let dispatcher: Dispatcher
    let spec = ServableSpec(key: "sha256:k", digest: "sha256:k", directory: "/nowhere", metadata: ServableFixtures.sklearnDocument())
    let metadata: ServableMetadata

    init() throws {
        dir = try TemporaryDirectory("dlhub-dispatch")
        store = try TaskStore(path: dir.file("tasks.sqlite"))
        dispatcher = Dispatcher(store: store, waiters: waiters, logger: Logger(label: "test"))
        var doc = ServableFixtures.sklearnDocument().setting(["servable", "batching", "max_batch_size"], to: 4)
        doc = doc.setting(["dlhub", "files"], to: ["model": "model.joblib"])
        metadata = try ServableMetadata.validate(doc)
    }

    /// A fake pilot: its outbound frames are collected for inspection.
    final class FakePilot: @unchecked Sendable {
        let stream: AsyncStream<PilotFrame>
        let continuation: AsyncStream<PilotFrame>.Continuation
        var iterator: AsyncStream<PilotFrame>.Iterator
        init() {
            (stream, continuation) = AsyncStream.makeStream(of: PilotFrame.self)
            iterator = stream.makeAsyncIterator()
        }
        func next() async -> PilotFrame? { await iterator.next() }
    }

    func hello(_ job: UInt32, slots: Int = 2) -> PilotHello {
        PilotHello(credential: "", jobID: job, node: "node1", cores: 2, memoryMB: 1000, gpus: 0, walltimeEnd: 0, pool: "cpu", slots: slots)
    }

    func submit(_ n: Int, task: String = UUID().uuidString) async throws -> [UInt64] {
        let ids = try await store.accept(
            .init(
                id: task, owner: "alice", servable: "alice/iris@1", digest: "sha256:k", pool: "cpu", single: false,
                parameters: Array("{}".utf8),
                inputs: (0..<n).map { Array("\($0)".utf8) }))
        await dispatcher.enqueue(
            key: "sha256:k", spec: spec, metadata: metadata, pool: "cpu", parameters: Array("{}".utf8),
            items: zip(ids, 0..<n).map { Dispatcher.QueuedItem(id: $0, taskID: task, payload: Array("\($1)".utf8)) })
        return ids
    }

    func results(for batch: Batch) -> PilotFrame {
        .results(
            BatchResults(
                batchID: batch.id, items: batch.items.map { ItemResult(id: $0.id, outcome: .output($0.payload + Array("0".utf8))) }))
    }

    @Test func batchesGoToPilotsThatLoadedTheServableUpToTheirSlots() async throws {
        let pilot = FakePilot()
        let session = await dispatcher.attach(hello: hello(1), outbound: pilot.continuation)
        guard case .welcome = await pilot.next() else { Issue.record("no welcome"); return }
        _ = try await submit(10)
        guard case .load(let s) = await pilot.next() else { Issue.record("no load"); return }
        #expect(s.key == "sha256:k")
        await dispatcher.received(.loaded(key: "sha256:k", error: nil), from: session)
        // Two slots: two batches of at most 4 items, nothing more until a result comes back.
        guard case .batch(let b1) = await pilot.next(), case .batch(let b2) = await pilot.next() else { Issue.record("no batches"); return }
        #expect(b1.items.count == 4 && b2.items.count == 4)
        await dispatcher.received(results(for: b1), from: session)
        guard case .batch(let b3) = await pilot.next() else { Issue.record("no third batch"); return }
        #expect(b3.items.count == 2)
    }

    @Test func lostPilotsWorkIsRequeuedAndLateResultsAreIgnored() async throws {
        let a = FakePilot(), b = FakePilot()
        let sa = await dispatcher.attach(hello: hello(1, slots: 1), outbound: a.continuation)
        _ = await a.next()
        let task = UUID().uuidString
        _ = try await submit(3, task: task)
        _ = await a.next()  // load
        await dispatcher.received(.loaded(key: "sha256:k", error: nil), from: sa)
        guard case .batch(let held) = await a.next() else { Issue.record("no batch"); return }
        // Pilot a is lost; pilot b takes over the same items.
        await dispatcher.detach(sa, reason: "test: job cancelled")
        let sb = await dispatcher.attach(hello: hello(2, slots: 1), outbound: b.continuation)
        _ = await b.next()
        _ = await b.next()  // load
        await dispatcher.received(.loaded(key: "sha256:k", error: nil), from: sb)
        guard case .batch(let again) = await b.next() else { Issue.record("no re-sent batch"); return }
        #expect(Set(again.items.map(\.id)) == Set(held.items.map(\.id)))
        // a's late answer (wrong outputs) is ignored; b's is recorded.
        await dispatcher.received(
            .results(
                BatchResults(batchID: held.id, items: held.items.map { ItemResult(id: $0.id, outcome: .output(Array("\"stale\"".utf8))) })),
            from: sa)
        await dispatcher.received(results(for: again), from: sb)
        let record = try #require(try await store.task(task))
        #expect(record.remaining == 0)
        #expect(record.items.map { $0.output.map { String(decoding: $0, as: UTF8.self) } } == ["00", "10", "20"])
    }

    @Test func loadFailureFailsQueuedItemsWithTheReason() async throws {
        let pilot = FakePilot()
        let session = await dispatcher.attach(hello: hello(1), outbound: pilot.continuation)
        _ = await pilot.next()
        let task = UUID().uuidString
        _ = try await submit(2, task: task)
        _ = await pilot.next()
        await dispatcher.received(.loaded(key: "sha256:k", error: "missing Python packages: torch"), from: session)
        let record = try #require(try await store.task(task))
        #expect(record.failed == 2)
        #expect(record.items.first?.error?.contains("missing Python packages: torch") == true)
    }

    @Test func repeatedlyLostItemsFailInsteadOfLoopingForever() async throws {
        let task = UUID().uuidString
        _ = try await submit(1, task: task)
        for job in 1...3 {
            let p = FakePilot()
            let s = await dispatcher.attach(hello: hello(UInt32(job), slots: 1), outbound: p.continuation)
            _ = await p.next()
            _ = await p.next()
            await dispatcher.received(.loaded(key: "sha256:k", error: nil), from: s)
            guard case .batch = await p.next() else { Issue.record("no batch for pilot \(job)"); return }
            await dispatcher.detach(s, reason: "test: node failure")
        }
        let record = try #require(try await store.task(task))
        #expect(record.failed == 1)
        #expect(record.items.first?.error?.contains("3 pilot jobs that were lost") == true)
    }
}
