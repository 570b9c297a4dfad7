import DLHubCore
import DLHubService
import DLHubTesting
import Foundation
import Testing

/// The durable task store on real SQLite: paging what a restart restores, expiring what waited
/// too long, and the schema's migrations.
@Suite struct TaskStoreTests {
    func accept(_ store: TaskStore, _ n: Int) async throws -> (String, [UInt64]) {
        let id = UUID().uuidString
        let ids = try await store.accept(
            .init(
                id: id, owner: "alice", servable: "alice/x@1", digest: "sha256:x", pool: "cpu", single: false, parameters: [],
                inputs: (0..<n).map { Array("\($0)".utf8) }))
        return (id, ids)
    }

    @Test func aRestartReadsWaitingItemsAPageAtATime() async throws {
        let dir = try TemporaryDirectory("dlhub-store")
        let store = try TaskStore(path: dir.file("tasks.sqlite"))
        let (_, ids) = try await accept(store, 25)
        _ = try await store.complete([ItemResult(id: ids[3], outcome: .output(Array("1".utf8)))])
        var seen: [UInt64] = []
        var after: UInt64 = 0
        var pages = 0
        while true {
            let page = try await store.unfinished(after: after, limit: 10)
            guard let last = page.last else { break }
            #expect(page.count <= 10)
            seen += page.map(\.itemID)
            after = last.itemID
            pages += 1
        }
        #expect(pages == 3)
        #expect(seen == ids.filter { $0 != ids[3] })
    }

    @Test func itemsUnansweredPastTheRetentionAreFailedWithAReason() async throws {
        let dir = try TemporaryDirectory("dlhub-store")
        let store = try TaskStore(path: dir.file("tasks.sqlite"))
        let (task, ids) = try await accept(store, 3)
        _ = try await store.complete([ItemResult(id: ids[0], outcome: .output(Array("1".utf8)))])
        #expect(try await store.expire(createdBefore: Date().timeIntervalSince1970 - 60).isEmpty, "not old enough")
        let expired = try await store.expire(createdBefore: Date().timeIntervalSince1970 + 60)
        #expect(Set(expired.map(\.id)) == Set(ids.dropFirst()))
        _ = try await store.complete(expired)
        let record = try #require(try await store.task(task))
        #expect(record.finished != nil && record.failed == 2)
        #expect(record.items[1].state == .failed && record.items[1].error?.contains("retention") == true)
    }

    @Test func anExistingStoreIsMigratedAndKeepsItsTasks() async throws {
        let dir = try TemporaryDirectory("dlhub-store")
        let (task, _) = try await accept(try TaskStore(path: dir.file("tasks.sqlite")), 2)
        // Reopened (as after an upgrade), and with the durable setting.
        let reopened = try TaskStore(path: dir.file("tasks.sqlite"), durable: true)
        #expect(try await reopened.task(task)?.remaining == 2)
        let migrations = try Subprocess.run("/usr/bin/sqlite3", [dir.file("tasks.sqlite"), "SELECT identifier FROM grdb_migrations"]).stdout
        #expect(migrations.split(separator: "\n") == ["v1", "v2-unfinished-by-age"])
    }
}
