import PropertyBased
import Testing

@testable import DLHubService

/// Which environment build starts next (`EnvironmentStore.nextBuild`): users take turns for the
/// build slots, so that one user's hundred builds do not stand in front of another user's one.
@Suite struct BuildTurnTests {
    /// Two build slots, alice's hundred builds queued first, then bob's one: bob's starts as
    /// soon as a slot frees, not after alice's hundred.
    @Test func anotherUsersBuildStartsAtTheNextFreeSlot() {
        var pending = Array(repeating: "alice", count: 100) + ["bob"]
        var lastStart: [String: UInt64] = [:]
        var started: [String] = []
        var clock: UInt64 = 0
        for _ in 0..<4 {
            let next = pending.remove(at: EnvironmentStore.nextBuild(pending, lastStart: lastStart))
            clock += 1
            lastStart[next] = clock
            started.append(next)
        }
        #expect(started == ["alice", "bob", "alice", "alice"])
    }

    /// Generated queues: the pick is a user whose latest start is the oldest, and the first such
    /// in line (first come, first served within a user and among equals).
    @Test func thePickIsTheFirstOfTheLeastRecentlyServed() async {
        await propertyCheck(count: 1000, input: Gen.int(in: 0...4).array(of: 1...40), Gen.int(in: 0...6).array(of: 5...5)) {
            users, starts in
            let names = users.map { "u\($0)" }
            var lastStart: [String: UInt64] = [:]
            for (i, s) in starts.enumerated() where s > 0 { lastStart["u\(i)"] = UInt64(s) }
            let pick = EnvironmentStore.nextBuild(names, lastStart: lastStart)
            let least = names.map { lastStart[$0] ?? 0 }.min()!
            #expect(lastStart[names[pick]] ?? 0 == least)
            #expect(names[..<pick].allSatisfy { (lastStart[$0] ?? 0) > least }, "an equal was in line before it")
        }
    }
}
