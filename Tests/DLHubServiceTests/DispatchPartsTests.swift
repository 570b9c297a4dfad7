import DLHubCore
import DLHubTesting
import Foundation
import PropertyBased
import Testing

@testable import DLHubService

/// The parts the dispatcher is composed of, each alone: plain values, no actor, no store.
@Suite struct DispatchPartsTests {
    func item(_ id: UInt64, task: String = "t", owner: String = "alice", bytes: Int = 3) -> Dispatcher.QueuedItem {
        Dispatcher.QueuedItem(id: id, taskID: task, owner: owner, payload: [UInt8](repeating: 49, count: bytes))
    }

    // MARK: QuotaLedger

    @Test func aUserOverQuotaIsRefusedWithWhatTheyHaveAndTheLimits() throws {
        var quota = QuotaLedger(maxItems: 5, maxBytes: 100)
        let ids = try quota.reserve(owner: "alice", items: 4, bytes: 40)
        #expect(ids == 1..<5)
        #expect(throws: DLHubError.self) { try quota.reserve(owner: "alice", items: 2, bytes: 2) }
        do {
            _ = try quota.reserve(owner: "alice", items: 1, bytes: 61)
            Issue.record("61 bytes more fit under a limit of 100 with 40 waiting")
        } catch {
            #expect(error.code == .quotaExceeded)
            #expect(error.message.contains("you have 4 input(s) (40 bytes) waiting"))
            #expect(error.message.contains("the limit is 5 inputs and 100 bytes per user"))
        }
        // Another user has a quota of their own, and a refusal numbers nothing.
        #expect(try quota.reserve(owner: "bob", items: 5, bytes: 100) == 5..<10)
    }

    /// Generated traffic: reservations that are accepted (registered) or given back, answers in
    /// any order, some twice, restores after a "restart". Whatever happens, each user's count is
    /// what they have unanswered, never over the limits, and ids are never given out twice.
    @Test func generatedTrafficCountsExactlyWhatIsUnanswered() async {
        let ops = Gen.int(in: 0...5).array(of: 1...200)
        let sizes = Gen.int(in: 1...6).array(of: 200...200)
        let users = Gen.int(in: 0...2).array(of: 200...200)
        await propertyCheck(count: 300, input: ops, sizes, users) { ops, sizes, users in
            var quota = QuotaLedger(maxItems: 12, maxBytes: 60)
            var unanswered: [UInt64: Dispatcher.QueuedItem] = [:]
            var reservedOnly: [(owner: String, items: Int, bytes: Int)] = []
            var given = Set<UInt64>()
            var restored: UInt64 = 0
            for (n, op) in ops.enumerated() {
                let owner = "u\(users[n])"
                switch op {
                case 0, 1:
                    // A request of `size` inputs of 4 bytes, accepted.
                    let size = sizes[n]
                    guard let ids = try? quota.reserve(owner: owner, items: size, bytes: size * 4) else { continue }
                    let items = ids.map { item($0, owner: owner, bytes: 4) }
                    for i in items {
                        #expect(given.insert(i.id).inserted, "item id \(i.id) given out twice")
                        unanswered[i.id] = i
                    }
                    quota.register(items)
                case 2:
                    // Reserved, then the store refused it: given back.
                    let size = sizes[n]
                    guard let ids = try? quota.reserve(owner: owner, items: size, bytes: size) else { continue }
                    for id in ids { #expect(given.insert(id).inserted) }
                    reservedOnly.append((owner, size, size))
                    let r = reservedOnly.removeLast()
                    quota.unreserve(owner: r.owner, items: r.items, bytes: r.bytes)
                case 3, 4:
                    // Some answers, one of them again.
                    let answered = Array(unanswered.keys.sorted().prefix(sizes[n]))
                    quota.settle(answered + answered.prefix(1))
                    for id in answered { unanswered[id] = nil }
                default:
                    // A restart: a new ledger, numbering after the last id, restoring what is unanswered.
                    quota = QuotaLedger(maxItems: 12, maxBytes: 60)
                    restored = given.max() ?? 0
                    quota.startItemIDs(after: restored)
                    quota.restore(Array(unanswered.values))
                    quota.restore(Array(unanswered.values))
                }
                for u in 0...2 {
                    let mine = unanswered.values.filter { $0.owner == "u\(u)" }
                    let counted = quota.waiting("u\(u)")
                    #expect(counted.items == mine.count, "u\(u): counted \(counted.items), unanswered \(mine.count)")
                    #expect(counted.bytes == Int64(mine.reduce(0) { $0 + $1.payload.count }))
                    #expect(counted.items <= 12 && counted.bytes <= 60)
                }
                #expect(quota.unanswered == unanswered.count)
                #expect(quota.nextItemID > (given.max() ?? 0))
            }
        }
    }

    // MARK: RunningTasks

    @Test func aTaskRunsWhileAnyOfItsItemsIsOnAPilot() {
        var running = RunningTasks()
        let a = [item(1, task: "a"), item(2, task: "a"), item(3, task: "b"), item(4, task: "a")]
        #expect(RunningTasks.runs(a).map(\.1) == [2, 1, 1])
        running.sent(a)
        #expect(running.isRunning("a") && running.isRunning("b"))
        running.landed([a[0], a[2]])
        #expect(running.isRunning("a") && !running.isRunning("b"))
        running.landed([a[1], a[3]])
        #expect(!running.isRunning("a"))
        // Landing more than was sent (a batch settled twice) does not go below zero.
        running.landed(a)
        running.sent([a[2]])
        #expect(running.isRunning("b"))
    }

    @Test func itemsOfATaskCancelledUnderWayAreAnsweredWithTheCancellationNotRunAgain() {
        var running = RunningTasks()
        let items = [item(1, task: "a"), item(2, task: "b"), item(3, task: "a")]
        #expect(running.sortOut(items).kept.map(\.id) == [1, 2, 3])
        running.cancelled("a", message: "cancelled by alice")
        let (kept, answers) = running.sortOut(items)
        #expect(kept.map(\.id) == [2])
        #expect(answers.map(\.id) == [1, 3])
        #expect(answers.allSatisfy { $0.outcome == .error("cancelled by alice") })
        // The table is bounded.
        for n in 0...RunningTasks.maxCancellations { running.cancelled("x\(n)", message: "m") }
        #expect(running.sortOut(items).kept.count >= 2)
    }

    // MARK: LostAttempts

    @Test func anItemIsFailedOnItsThirdLostPilotCountingTheStoreAcrossRestarts() {
        var attempts = LostAttempts(maxAttempts: 3)
        #expect(attempts.lost([1, 2], stored: [:]).isEmpty)
        #expect(attempts.lost([1, 2], stored: [:]).isEmpty)
        // Item 2 was lost once more before a restart, which only the store remembers.
        #expect(attempts.lost([1, 2, 3], stored: [2: 4, 3: 1]) == [1, 2])
        attempts.answered([ItemResult(id: 1, outcome: .output([]))])
        #expect(attempts.lost([1], stored: [:]).isEmpty, "an answered item starts again")
        #expect(attempts.message(lostJob: 7, node: "n1").contains("3 pilot jobs that were lost (last: job 7 on n1)"))
    }

    // MARK: GroupCommit

    /// Generated interleavings of results landing and a writer that takes groups: every result
    /// is written exactly once and in the order it landed, one writer at a time, and the writer
    /// stops only when nothing waits.
    @Test func generatedInterleavingsWriteEveryResultOnceInOrderWithOneWriter() async {
        await propertyCheck(count: 500, input: Gen.int(in: 0...3).array(of: 1...100)) { ops in
            var commits = GroupCommit()
            var writerActive = false
            var next: UInt64 = 0
            var written: [UInt64] = []
            for op in ops {
                if op < 3 {
                    let results = (0...op).map { _ in
                        defer { next += 1 }
                        return ItemResult(id: next, outcome: .output([]))
                    }
                    let start = commits.add(results)
                    #expect(start == !writerActive, "a second writer started, or none when one was needed")
                    if start { writerActive = true }
                } else if writerActive {
                    if let group = commits.next() { written += group.map(\.id) } else { writerActive = false }
                }
            }
            while writerActive {
                if let group = commits.next() { written += group.map(\.id) } else { writerActive = false }
            }
            #expect(written == Array(0..<next))
            #expect(commits.waiting == 0)
        }
    }

    // MARK: LiveRequests

    func liveEntry(_ id: String, _ n: Int) -> LiveTasks.Entry {
        LiveTasks.Entry(
            id: id, owner: "alice", servable: "alice/x@1", digest: "d", pool: "cpu", single: true, parameters: [],
            itemIDs: [UInt64(n)], inputs: [[49]])
    }

    /// Generated deadlines and clock steps, with real parked callers: at each step exactly the
    /// callers whose deadline passed come back (a caller resumed twice would trap), and a stop
    /// hands back all the others, after which nobody parks.
    @Test func generatedWaitsEndOnceAtTheirDeadlineOrAtTheStop() async {
        let deadlines = Gen.int(in: 1...60).array(of: 1...12)
        let steps = Gen.int(in: 1...25).array(of: 1...6)
        await propertyCheck(count: 100, input: deadlines, steps) { deadlines, steps in
            let box = LockedBox(LiveRequests())
            let ended = LockedBox(0)
            await withTaskGroup(of: Void.self) { group in
                for (n, at) in deadlines.enumerated() {
                    let id = "t\(n)"
                    box.update { $0.tasks.add(liveEntry(id, n)) }
                    group.addTask {
                        _ = await withCheckedContinuation { waiter in
                            if !box.update({ $0.park(id, waiter, until: UInt64(at)) }) { waiter.resume(returning: nil) }
                        }
                        ended.update { $0 += 1 }
                    }
                }
                while box.update({ live in (0..<deadlines.count).filter { live.tasks.isParked("t\($0)") }.count }) < deadlines.count {
                    try? await Task.sleep(nanoseconds: 100_000)
                }
                var clock: UInt64 = 0
                var left = deadlines.map(UInt64.init)
                for step in steps {
                    clock += UInt64(step)
                    let back = box.update { $0.expired(now: clock) }
                    #expect(back.count == left.filter { $0 <= clock }.count, "at \(clock): \(back.count) came back")
                    left.removeAll { $0 <= clock }
                    for waiter in back { waiter.resume(returning: nil) }
                }
                let rest = box.update { $0.stop() }
                #expect(rest.count == left.count)
                for waiter in rest { waiter.resume(returning: nil) }
                await group.waitForAll()
            }
            #expect(ended.value == deadlines.count)
            box.update { $0.tasks.add(liveEntry("late", 99)) }
            let refused = await withCheckedContinuation { waiter in
                let parked = box.update { $0.park("late", waiter, until: .max) }
                if !parked { waiter.resume(returning: nil) }
            }
            #expect(refused == nil && !box.update { $0.tasks.isParked("late") })
        }
    }

    // MARK: ServableDirectory and DispatchMetrics

    @Test func residentServablesAreNamedOnlyToWhoMaySeeThem() throws {
        var directory = ServableDirectory()
        let doc = ServableFixtures.sklearnDocument().setting(["dlhub", "files"], to: ["model": "model.joblib"])
        let metadata = try ServableMetadata.validate(doc.setting(["dlhub", "visible_to"], to: ["user:alice"]))
        var spec = ServableSpec(
            key: "sha256:k", digest: "sha256:k", directory: "/x",
            metadata: doc.setting(["dlhub", "owner"], to: "alice").setting(["dlhub", "version"], to: 2))
        spec.environment.interpreter = "/envs/abc123/bin/python"
        directory.note(spec, metadata: metadata)
        let name = directory.displayName("sha256:k", for: nil)
        #expect(name.hasPrefix("alice/") && name.hasSuffix("@2"))
        #expect(directory.displayName("sha256:k", for: Caller(uid: 1002, gid: 1002, login: "bob", groups: ["bob"])) == "private")
        #expect(directory.displayName("sha256:other", for: nil) == "(resident from before a restart)")
        #expect(directory.keys(inEnvironment: "abc123") == ["sha256:k"])
        #expect(directory.keys(inEnvironment: "abc") == [])
        // Pruned only when labels far outnumber what is still shown.
        directory.prune(keeping: [])
        #expect(directory.labels.count == 1)
        #expect(DispatchMetrics.servableLabel(metadata, digest: "sha256:0123456789abcdef") == "private:sha256:01234")
    }
}
