import DLHubCore
import DLHubTesting
import Foundation
import PropertyBased
import Testing

@testable import DLHubService

/// The batching policy, without sockets: fairness, sizes in items and bytes, dropping empties.
@Suite struct BatchPlannerTests {
    let metadata: ServableMetadata

    init() throws {
        var doc = ServableFixtures.sklearnDocument().setting(["servable", "batching", "max_batch_size"], to: 4)
        doc = doc.setting(["dlhub", "files"], to: ["model": "model.joblib"])
        metadata = try ServableMetadata.validate(doc)
    }

    func queue(_ key: String) -> BatchPlanner.Queue {
        BatchPlanner.Queue(
            spec: ServableSpec(key: key, digest: key, directory: "/x", metadata: [:]), metadata: metadata, pool: "cpu", parameters: [])
    }

    func items(_ n: Int, from start: UInt64 = 0, bytes: Int = 1, owner: String = "alice") -> [Dispatcher.QueuedItem] {
        (0..<n).map {
            Dispatcher.QueuedItem(id: start + UInt64($0), taskID: "t", owner: owner, payload: [UInt8](repeating: 49, count: bytes))
        }
    }

    @Test func queuesTakeTurnsWhateverTheirSize() {
        var planner = BatchPlanner(maxBatchBytes: 1 << 20)
        planner.add("big", template: queue("big"), items: items(1000))
        planner.add("small", template: queue("small"), items: items(2, from: 5000))
        // One slot at a time: big, small, big... never all of big first.
        var served: [String] = []
        for _ in 0..<4 {
            guard let key = planner.ready.first else { break }
            _ = planner.take(key, freeSlots: 1)
            served.append(key)
        }
        #expect(served == ["big", "small", "big", "big"])
    }

    @Test func batchesAreCutByItemsAndByBytesButNeverEmpty() {
        var planner = BatchPlanner(maxBatchBytes: 1000)
        planner.add("k", template: queue("k"), items: items(10, bytes: 300))
        #expect(planner.take("k", freeSlots: 1).count == 3, "3 x 300 bytes fit in 1000, 4 do not")
        planner.add("huge", template: queue("huge"), items: items(2, from: 100, bytes: 5000))
        #expect(planner.take("huge", freeSlots: 1).count == 1, "one item larger than the cut still goes, alone")
        planner.add("many", template: queue("many"), items: items(10, from: 200))
        #expect(planner.take("many", freeSlots: 1).count == 4, "max_batch_size")
        #expect(planner.take("many", freeSlots: 6).count == 1, "shared among free slots: 6 left, 6 slots")
    }

    @Test func emptyQueuesAreDroppedUnlessStillNeeded() {
        var planner = BatchPlanner(maxBatchBytes: 1 << 20)
        for i in 0..<100 { planner.add("params-\(i)", template: queue("params-\(i)"), items: items(1, from: UInt64(i))) }
        for key in planner.ready { _ = planner.take(key, freeSlots: 1) }
        planner.dropEmpty(keeping: ["params-7"])
        #expect(Array(planner.queues.keys) == ["params-7"])
        #expect(planner.turn == ["params-7"])
    }

    @Test func itemsPutBackGoFirst() {
        var planner = BatchPlanner(maxBatchBytes: 1 << 20)
        planner.add("k", template: queue("k"), items: items(6))
        let first = planner.take("k", freeSlots: 1)
        planner.putBack("k", template: nil, items: first)
        #expect(planner.take("k", freeSlots: 1).map(\.id) == first.map(\.id))
    }

    /// Found by reading the planner: items of one queue went first in, first out, so 10,000
    /// inputs one user sent first stood in front of another user's one input.
    @Test func usersOfOneQueueShareEachBatch() {
        var planner = BatchPlanner(maxBatchBytes: 1 << 20)
        planner.add("k", template: queue("k"), items: items(1000, owner: "alice"))
        planner.add("k", template: queue("k"), items: items(1, from: 5000, owner: "bob"))
        let batch = planner.take("k", freeSlots: 1)
        #expect(batch.count == 4)
        #expect(batch.contains { $0.owner == "bob" }, "bob waits behind 1000 of alice's inputs: \(batch.map(\.owner))")
        #expect(planner.pendingByUser == ["alice": 997])
    }

    /// Found by reading the planner: queues took turns, so a user with ten servables had ten
    /// turns for each one of a user with one.
    @Test func usersTakeTurnsWhateverTheirNumberOfQueues() {
        var planner = BatchPlanner(maxBatchBytes: 1 << 20)
        for i in 0..<10 { planner.add("a\(i)", template: queue("a\(i)"), items: items(100, from: UInt64(i * 1000), owner: "alice")) }
        planner.add("b", template: queue("b"), items: items(100, from: 50_000, owner: "bob"))
        var served: [String] = []
        for _ in 0..<10 {
            guard let key = planner.ready.first else { break }
            served.append(planner.take(key, freeSlots: 1).first?.owner ?? "?")
        }
        #expect(served == ["alice", "bob", "alice", "bob", "alice", "bob", "alice", "bob", "alice", "bob"])
    }

    /// A user who had nothing left and sends work again waits behind those who waited all along
    /// (they used to get back the place they had when they left: the generated traffic below
    /// found it).
    @Test func aUserComingBackJoinsTheLineAtTheBack() {
        var planner = BatchPlanner(maxBatchBytes: 1 << 20)
        planner.add("qc", template: queue("qc"), items: items(2, from: 100, owner: "carol"))
        #expect(planner.take("qc", freeSlots: 1).map(\.owner) == ["carol", "carol"])
        planner.add("qa", template: queue("qa"), items: items(8, from: 200, owner: "alice"))
        planner.add("qb", template: queue("qb"), items: items(8, from: 300, owner: "bob"))
        var served: [String] = []
        func next() {
            guard let key = planner.ready.first else { return }
            served.append(planner.take(key, freeSlots: 1).first?.owner ?? "none")
        }
        next()
        planner.add("qc", template: queue("qc"), items: items(2, from: 400, owner: "carol"))
        next()
        next()
        next()
        // The line was bob, alice when carol came back: she goes after them.
        #expect(served == ["alice", "bob", "alice", "carol"])
    }

    /// Generated traffic (users, queues, adds, takes, put-backs, cancellations): nothing is lost
    /// or doubled, each user's items of a queue leave in the order they came, the counts agree,
    /// and with one slot at a time a user with work ready is served within as many batches as
    /// there were users waiting when it began to wait (those who come later wait behind it).
    @Test func generatedTrafficLosesNothingKeepsOrderAndServesEveryUserInTurn() async {
        let op = Gen.int(in: 0...5).array(of: 1...120)
        let who = Gen.int(in: 0...3).array(of: 120...120)
        let which = Gen.int(in: 0...3).array(of: 120...120)
        await propertyCheck(count: 300, input: op, who, which) { ops, users, keys in
            var planner = BatchPlanner(maxBatchBytes: 1 << 20)
            var next: UInt64 = 0
            var added: [UInt64: Dispatcher.QueuedItem] = [:]
            var out: [UInt64] = []
            var lastOut: [String: UInt64] = [:]
            var cancelled = 0
            var waitedSince: [String: (take: Int, among: Int)] = [:]
            var takes = 0
            for (n, kind) in ops.enumerated() {
                let user = "u\(users[n])"
                let key = "q\(keys[n])"
                switch kind {
                case 0, 1, 2:
                    let batch = (0..<(kind + 1) * 3).map { i in
                        Dispatcher.QueuedItem(id: next + UInt64(i), taskID: "t\(n)", owner: user, payload: [49])
                    }
                    next += UInt64(batch.count)
                    for item in batch { added[item.id] = item }
                    planner.add(key, template: queue(key), items: batch)
                case 3, 4:
                    guard let first = planner.ready.first else { continue }
                    let waiting = Set(planner.ready.flatMap { planner.queues[$0]!.owners })
                    let batch = planner.take(first, freeSlots: 1)
                    takes += 1
                    #expect(!batch.isEmpty)
                    for owner in Set(batch.map(\.owner)) { waitedSince[owner] = nil }
                    for owner in waiting where waitedSince[owner] == nil && !batch.contains(where: { $0.owner == owner }) {
                        waitedSince[owner] = (takes, waiting.count)
                    }
                    for (owner, since) in waitedSince where waiting.contains(owner) {
                        #expect(
                            takes - since.take < since.among, "\(owner) waited \(takes - since.take) batches among \(since.among) users")
                    }
                    if kind == 4 {
                        planner.putBack(first, template: nil, items: batch)
                    } else {
                        for item in batch {
                            // Per user and queue: in the order they came (ids grow with time).
                            let lane = item.owner + "/" + first
                            #expect((lastOut[lane] ?? 0) <= item.id || lastOut[lane] == nil, "\(lane) out of order")
                            lastOut[lane] = item.id
                            out.append(item.id)
                        }
                    }
                default:
                    cancelled += planner.remove(key, task: "t\(max(0, n - 3))").count
                }
                #expect(planner.pending == planner.pendingByUser.values.reduce(0, +))
                // A user left with nothing (all cancelled) has left the line: waiting starts again.
                waitedSince = waitedSince.filter { planner.pendingByUser[$0.key] != nil }
            }
            var rest: [UInt64] = []
            for key in planner.queues.keys { rest += planner.drain(key).map(\.id) }
            #expect(Set(out).count == out.count, "an item left twice")
            #expect(out.count + rest.count + cancelled == added.count, "an item was lost or doubled")
            #expect(planner.pendingByUser.isEmpty)
        }
    }
}
