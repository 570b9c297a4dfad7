import DLHubCore
import DLHubTesting
import Foundation
import Logging
import Testing

@testable import DLHubService

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
        PilotHello(
            credential: "", jobID: job, node: "node1", cores: 2, memoryMB: 1000, gpus: 0, walltimeEnd: 0, pool: "cpu", slots: slots,
            nonce: PilotProof.random(), isolation: "bubblewrap")
    }

    /// A pilot that passed the handshake (the listener's part; tested end to end).
    func attach(_ hello: PilotHello, _ pilot: FakePilot) async -> Int {
        let id = await dispatcher.reserveSessionID()
        await dispatcher.attach(session: id, hello: hello, outbound: pilot.continuation)
        return id
    }

    func submit(_ n: Int, task: String = UUID().uuidString) async throws -> [UInt64] {
        let ids = try await store.accept(
            .init(
                id: task, owner: "alice", servable: "alice/iris@1", digest: "sha256:k", pool: "cpu", single: false,
                parameters: Array("{}".utf8),
                inputs: (0..<n).map { Array("\($0)".utf8) }))
        await dispatcher.enqueue(
            key: "sha256:k", spec: spec, metadata: metadata, pool: "cpu", parameters: Array("{}".utf8),
            items: zip(ids, 0..<n).map { Dispatcher.QueuedItem(id: $0, taskID: task, owner: "root", payload: Array("\($1)".utf8)) })
        return ids
    }

    func results(for batch: Batch) -> PilotFrame {
        .results(
            BatchResults(
                batchID: batch.id, items: batch.items.map { ItemResult(id: $0.id, outcome: .output($0.payload + Array("0".utf8))) }))
    }

    @Test func batchesGoToPilotsThatLoadedTheServableUpToTheirSlots() async throws {
        let pilot = FakePilot()
        let session = await attach(hello(1), pilot)
        _ = try await submit(10)
        guard case .load(let s) = await pilot.next() else { Issue.record("no load"); return }
        #expect(s.key == "sha256:k")
        _ = await dispatcher.received(.loaded(key: "sha256:k", error: nil, log: ""), from: session)
        // Two slots: two batches of at most 4 items, nothing more until a result comes back.
        guard case .batch(let b1) = await pilot.next(), case .batch(let b2) = await pilot.next() else { Issue.record("no batches"); return }
        #expect(b1.items.count == 4 && b2.items.count == 4)
        _ = await dispatcher.received(results(for: b1), from: session)
        guard case .batch(let b3) = await pilot.next() else { Issue.record("no third batch"); return }
        #expect(b3.items.count == 2)
    }

    @Test func lostPilotsWorkIsRequeuedAndLateResultsAreIgnored() async throws {
        let a = FakePilot(), b = FakePilot()
        let sa = await attach(hello(1, slots: 1), a)
        let task = UUID().uuidString
        _ = try await submit(3, task: task)
        _ = await a.next()  // load
        _ = await dispatcher.received(.loaded(key: "sha256:k", error: nil, log: ""), from: sa)
        guard case .batch(let held) = await a.next() else { Issue.record("no batch"); return }
        // Pilot a is lost; pilot b takes over the same items.
        await dispatcher.detach(sa, reason: "test: job cancelled")
        let sb = await attach(hello(2, slots: 1), b)
        _ = await b.next()  // load
        _ = await dispatcher.received(.loaded(key: "sha256:k", error: nil, log: ""), from: sb)
        guard case .batch(let again) = await b.next() else { Issue.record("no re-sent batch"); return }
        #expect(Set(again.items.map(\.id)) == Set(held.items.map(\.id)))
        // a's late answer (wrong outputs) is ignored; b's is recorded.
        _ = await dispatcher.received(
            .results(
                BatchResults(batchID: held.id, items: held.items.map { ItemResult(id: $0.id, outcome: .output(Array("\"stale\"".utf8))) })),
            from: sa)
        _ = await dispatcher.received(results(for: again), from: sb)
        let record = try #require(try await store.task(task))
        #expect(record.remaining == 0)
        #expect(record.items.map { $0.output.map { String(decoding: $0, as: UTF8.self) } } == ["00", "10", "20"])
    }

    @Test func loadFailureFailsQueuedItemsWithTheReason() async throws {
        let pilot = FakePilot()
        let session = await attach(hello(1), pilot)
        let task = UUID().uuidString
        _ = try await submit(2, task: task)
        _ = await pilot.next()
        _ = await dispatcher.received(.loaded(key: "sha256:k", error: "missing Python packages: torch", log: ""), from: session)
        let record = try #require(try await store.task(task))
        #expect(record.failed == 2)
        #expect(record.items.first?.error?.contains("missing Python packages: torch") == true)
    }

    @Test func repeatedlyLostItemsFailInsteadOfLoopingForever() async throws {
        let task = UUID().uuidString
        _ = try await submit(1, task: task)
        for job in 1...3 {
            let p = FakePilot()
            let s = await attach(hello(UInt32(job), slots: 1), p)
            _ = await p.next()
            _ = await dispatcher.received(.loaded(key: "sha256:k", error: nil, log: ""), from: s)
            guard case .batch = await p.next() else { Issue.record("no batch for pilot \(job)"); return }
            await dispatcher.detach(s, reason: "test: node failure")
        }
        let record = try #require(try await store.task(task))
        #expect(record.failed == 1)
        #expect(record.items.first?.error?.contains("3 pilot jobs that were lost") == true)
    }

    @Test func framesThePilotWasNotAskedForAreRefused() async throws {
        let pilot = FakePilot()
        let session = await attach(hello(1), pilot)
        // Claiming to have loaded a servable it was never sent would let it receive that servable's inputs.
        let refusal = await dispatcher.received(.loaded(key: "sha256:someone-elses", error: nil, log: ""), from: session)
        #expect(refusal?.contains("never asked") == true)
        #expect(
            await dispatcher.received(.batch(Batch(id: 1, key: "k", parameters: [], timeoutSeconds: 1, items: [])), from: session) != nil)
        #expect(await dispatcher.received(.heartbeat(["workers": 0]), from: session) == nil)
        // Credit beyond what the hello declared is clamped, not trusted.
        #expect(await dispatcher.received(.credit(slots: 1000), from: session) == nil)
        #expect(await dispatcher.allSessions().first?.slots == 2)
    }

    @Test func aBatchHeldPastItsDeadlineIsTakenBackAndRetriedElsewhere() async throws {
        let a = FakePilot(), b = FakePilot()
        let sa = await attach(hello(1, slots: 1), a)
        let task = UUID().uuidString
        _ = try await submit(2, task: task)
        _ = await a.next()  // load
        _ = await dispatcher.received(.loaded(key: "sha256:k", error: nil, log: ""), from: sa)
        guard case .batch(let held) = await a.next() else { Issue.record("no batch"); return }
        // The pilot keeps heartbeating but never answers: past the deadline, the batch comes back.
        await dispatcher.reapOverdueBatches(now: Date().addingTimeInterval(3600))
        let sb = await attach(hello(2, slots: 1), b)
        _ = await b.next()  // load
        _ = await dispatcher.received(.loaded(key: "sha256:k", error: nil, log: ""), from: sb)
        guard case .batch(let again) = await b.next() else { Issue.record("not re-sent"); return }
        #expect(Set(again.items.map(\.id)) == Set(held.items.map(\.id)))
        // The first pilot's late answer is ignored.
        _ = await dispatcher.received(results(for: held), from: sa)
        #expect(try await store.task(task)?.remaining == 2)
    }

    @Test func quotasCountWhatIsWaitingAndFreeWhatIsAnswered() async throws {
        let limited = Dispatcher(
            store: store, waiters: waiters,
            limits: {
                var l = Dispatcher.Limits()
                l.queuedItemsPerUser = 3
                return l
            }(), logger: Logger(label: "test"))
        try await limited.reserve(owner: "alice", items: 3, bytes: 10)
        await #expect(throws: DLHubError.self) { try await limited.reserve(owner: "alice", items: 1, bytes: 1) }
        try await limited.reserve(owner: "bob", items: 3, bytes: 10)
        let ids = try await store.accept(
            .init(
                id: UUID().uuidString, owner: "alice", servable: "a/b@1", digest: "d", pool: "cpu", single: false, parameters: [],
                inputs: [[1], [2], [3]]))
        await limited.register(ids.map { Dispatcher.QueuedItem(id: $0, taskID: "t", owner: "alice", payload: [1]) })
        await limited.fail([Dispatcher.QueuedItem(id: ids[0], taskID: "t", owner: "alice", payload: [1])], "done")
        try await limited.reserve(owner: "alice", items: 1, bytes: 1)
    }
}

/// Tasks whose caller waits live in memory: answered without the store when they finish in
/// time, written to the store (with what they have) when the wait runs out.
@Suite struct LiveTaskTests {
    let base: DispatcherTests

    init() throws { base = try DispatcherTests() }

    func liveTask(_ n: Int) async throws -> (LiveTasks.Entry, [Dispatcher.QueuedItem]) {
        let ids = try await base.dispatcher.reserve(owner: "alice", items: n, bytes: n)
        let id = UUID().uuidString
        let inputs = (0..<n).map { Array("\($0)".utf8) }
        let entry = LiveTasks.Entry(
            id: id, owner: "alice", servable: "alice/iris@1", digest: "sha256:k", pool: "cpu", single: false,
            parameters: Array("{}".utf8), itemIDs: ids, inputs: inputs)
        return (entry, zip(ids, inputs).map { Dispatcher.QueuedItem(id: $0, taskID: id, owner: "alice", payload: $1) })
    }

    func start(_ entry: LiveTasks.Entry, _ items: [Dispatcher.QueuedItem]) async {
        await base.dispatcher.submit(
            items, live: entry, cacheKey: nil,
            then: .enqueue(
                key: "sha256:k", spec: base.spec, metadata: base.metadata, pool: "cpu", parameters: Array("{}".utf8), waitingFor: nil))
    }

    @Test func aTaskFinishedWithinItsWaitIsAnsweredFromMemoryAndNeverStored() async throws {
        let pilot = DispatcherTests.FakePilot()
        let session = await base.attach(base.hello(1, slots: 1), pilot)
        let (entry, items) = try await liveTask(3)
        await start(entry, items)
        guard case .load = await pilot.next() else { Issue.record("no load"); return }
        _ = await base.dispatcher.received(.loaded(key: "sha256:k", error: nil, log: ""), from: session)
        guard case .batch(let batch) = await pilot.next() else { Issue.record("no batch"); return }
        #expect(batch.items.map(\.id) == entry.itemIDs)
        async let answered = base.dispatcher.waitLive(entry.id, seconds: 30)
        try await Task.sleep(for: .milliseconds(50))
        _ = await base.dispatcher.received(base.results(for: batch), from: session)
        let task = try #require(await answered)
        #expect(task.outcomes == [.output(Array("00".utf8)), .output(Array("10".utf8)), .output(Array("20".utf8))])
        #expect(task.finished != nil)
        #expect(try await base.store.task(entry.id) == nil, "a task answered in time is not written")
        #expect(await base.dispatcher.liveTasks == 0)
        // The item ids go on after those of the live task, also for stored tasks.
        let next = try await base.dispatcher.reserve(owner: "alice", items: 1, bytes: 1)
        #expect(next[0] > entry.itemIDs.last!)
    }

    @Test func aTaskWhoseWaitRunsOutIsStoredWithWhatItHasAndFinishesInTheStore() async throws {
        let pilot = DispatcherTests.FakePilot()
        let session = await base.attach(base.hello(1, slots: 2), pilot)
        let (entry, items) = try await liveTask(8)
        await start(entry, items)
        guard case .load = await pilot.next() else { Issue.record("no load"); return }
        _ = await base.dispatcher.received(.loaded(key: "sha256:k", error: nil, log: ""), from: session)
        guard case .batch(let b1) = await pilot.next(), case .batch(let b2) = await pilot.next() else { Issue.record("no batches"); return }
        _ = await base.dispatcher.received(base.results(for: b1), from: session)
        #expect(await base.dispatcher.waitLive(entry.id, seconds: 0.2) == nil, "the wait ran out")
        #expect(try await base.dispatcher.persistLive(entry.id) == nil)
        let stored = try #require(try await base.store.task(entry.id), "stored once its wait ran out")
        #expect(stored.remaining == 8 - b1.items.count)
        #expect(stored.items.prefix(b1.items.count).allSatisfy { $0.state == .done })
        // What lands later is recorded in the store, and the task finishes there.
        #expect(b1.items.count + b2.items.count == 8)
        _ = await base.dispatcher.received(base.results(for: b2), from: session)
        let done = try #require(try await base.store.task(entry.id))
        #expect(done.finished != nil && done.failed == 0)
        #expect(done.items.map { $0.output.map { String(decoding: $0, as: UTF8.self) } } == (0..<8).map { "\($0)0" })
        #expect(await base.dispatcher.liveTasks == 0)
    }

    /// One timer serves every parked request: a short wait that comes after a long one still
    /// runs out long before the long one would, and the long one is still answered.
    @Test func aShortWaitAfterALongOneRunsOutFirstAndTheLongOneIsStillAnswered() async throws {
        let pilot = DispatcherTests.FakePilot()
        let session = await base.attach(base.hello(1, slots: 2), pilot)
        let (long, longItems) = try await liveTask(1)
        await start(long, longItems)
        guard case .load = await pilot.next() else { Issue.record("no load"); return }
        _ = await base.dispatcher.received(.loaded(key: "sha256:k", error: nil, log: ""), from: session)
        guard case .batch(let batch) = await pilot.next() else { Issue.record("no batch"); return }
        async let longAnswer = base.dispatcher.waitLive(long.id, seconds: 600)
        try await Task.sleep(for: .milliseconds(50))
        let (short, shortItems) = try await liveTask(1)
        await start(short, shortItems)
        let started = ContinuousClock.now
        #expect(await base.dispatcher.waitLive(short.id, seconds: 0.2) == nil, "the short wait ran out")
        #expect(ContinuousClock.now - started < .seconds(300), "it did not wait for the long one's timer")
        _ = await base.dispatcher.received(base.results(for: batch), from: session)
        let answered = try #require(await longAnswer)
        #expect(answered.id == long.id && answered.finished != nil)
    }

    @Test func deadlinesComeOutInOrderAndAnsweredOnesAreDropped() {
        var d = WaitDeadlines()
        d.add("c", at: 30)
        d.add("a", at: 10)
        d.add("b", at: 20)
        d.add("d", at: 40)
        #expect(d.earliest == 10)
        #expect(d.expired(now: 25) == ["a", "b"])
        d.compact { $0 != "c" }
        #expect(d.count == 1 && d.earliest == 40)
        #expect(d.expired(now: 100) == ["d"])
        #expect(d.earliest == nil)
    }

    @Test func resultsAreSortedBetweenLiveTasksAndTheStore() {
        var live = LiveTasks()
        live.add(
            LiveTasks.Entry(
                id: "t", owner: "a", servable: "a/s@1", digest: "d", pool: "p", single: false, parameters: [], itemIDs: [10, 11],
                inputs: [[1], [2]]))
        var (forStore, finished) = live.complete([ItemResult(id: 10, outcome: .output([1])), ItemResult(id: 99, outcome: .error("x"))])
        #expect(forStore == [ItemResult(id: 99, outcome: .error("x"))])
        #expect(finished.isEmpty && live.task("t")?.remaining == 1)
        // A second answer for an item is ignored; the first stands.
        (forStore, finished) = live.complete([ItemResult(id: 10, outcome: .error("late"))])
        #expect(live.task("t")?.outcomes[0] == ItemResult.Outcome.output([1]) && live.task("t")?.remaining == 1)
        // While it is written to the store, results are also kept for the store.
        _ = live.beginPersisting("t")
        (forStore, finished) = live.complete([ItemResult(id: 11, outcome: .error("boom"))])
        #expect(live.task("t")?.late == [ItemResult(id: 11, outcome: .error("boom"))])
        #expect(live.task("t")?.finished != nil && live.task("t")?.failed == 1)
        live.remove("t")
        #expect(live.complete([ItemResult(id: 11, outcome: .output([]))]).forStore.count == 1)
        // A task whose store write failed goes when it finishes.
        live.add(
            LiveTasks.Entry(
                id: "u", owner: "a", servable: "a/s@1", digest: "d", pool: "p", single: true, parameters: [], itemIDs: [20], inputs: [[1]]))
        live.abandon("u")
        _ = live.complete([ItemResult(id: 20, outcome: .output([1]))])
        #expect(live.count == 0)
    }
}
