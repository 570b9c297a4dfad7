import DLHubCore
import Foundation
import Testing

@testable import DLHubService

/// The session table's index of who holds which servable stays true through every change.
@Suite struct PilotSessionsTests {
    func session(_ id: Int, resident: [String] = []) -> Dispatcher.Session {
        let hello = PilotHello(
            credential: "", jobID: UInt32(id), node: "node\(id)", cores: 2, memoryMB: 1000, gpus: 0, walltimeEnd: 0, pool: "cpu",
            slots: 2, nonce: PilotProof.random(), isolation: "bubblewrap", resident: resident)
        let (_, continuation) = AsyncStream.makeStream(of: PilotFrame.self)
        return Dispatcher.Session(
            id: id, hello: hello, connectedAt: Date(), slots: 2, loaded: Set(resident), idleSince: Date(), lastHeard: Date(),
            outbound: .stream(continuation))
    }

    func holders(_ table: PilotSessions, _ key: String) -> [Int] { table.holding(key).map(\.id).sorted() }

    @Test func holdersFollowAttachLoadUnloadAndDetach() {
        var table = PilotSessions()
        table.insert(session(1, resident: ["a"]))
        table.insert(session(2))
        #expect(holders(table, "a") == [1])
        table.load("a", on: 2)
        table.load("b", on: 2)
        #expect(holders(table, "a") == [1, 2])
        #expect(holders(table, "b") == [2])
        table.unload("a", on: 1)
        #expect(holders(table, "a") == [2])
        #expect(table[1]?.loaded == [])
        _ = table.remove(2)
        #expect(holders(table, "a") == [] && holders(table, "b") == [])
        #expect(Set(table.loadedKeys).isEmpty)
        // A session that reconnects under the same id replaces the old one and its holdings.
        table.insert(session(1, resident: ["c"]))
        table.insert(session(1, resident: ["d"]))
        #expect(holders(table, "c") == [] && holders(table, "d") == [1])
    }

    @Test func otherFieldsChangeThroughUpdateAndUnknownSessionsAreIgnored() {
        var table = PilotSessions()
        table.insert(session(1))
        table.update(1) { $0.draining = true }
        #expect(table[1]?.draining == true)
        #expect(table.update(9) { $0.draining = true } == nil)
        table.load("a", on: 9)
        #expect(holders(table, "a") == [])
        #expect(table.count == 1)
    }
}
