import DLHubCore
import DLHubTesting
import Foundation
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
}
