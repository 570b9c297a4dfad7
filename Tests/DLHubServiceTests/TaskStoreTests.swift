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
        #expect(migrations.split(separator: "\n") == ["v1", "v2-unfinished-by-age", "v3-cancel-and-list"])
    }

    @Test func aStoreWrittenBeforeCancellingExistedIsUpgradedInPlace() async throws {
        let dir = try TemporaryDirectory("dlhub-store")
        // The schema and a task as the previous release left them (migrations v1 and v2 only).
        let old = """
            CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
            INSERT INTO grdb_migrations VALUES ('v1'), ('v2-unfinished-by-age');
            CREATE TABLE tasks (
                id TEXT PRIMARY KEY, owner TEXT NOT NULL, servable TEXT NOT NULL, digest TEXT NOT NULL, pool TEXT NOT NULL,
                single INTEGER NOT NULL, parameters BLOB NOT NULL, item_count INTEGER NOT NULL,
                remaining INTEGER NOT NULL, failed INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, finished REAL);
            CREATE TABLE items (
                id INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL, idx INTEGER NOT NULL,
                input BLOB NOT NULL, state INTEGER NOT NULL DEFAULT 0, output BLOB, error TEXT, attempts INTEGER NOT NULL DEFAULT 0);
            INSERT INTO tasks VALUES ('t-old', 'alice', 'alice/x@1', 'sha256:0', 'cpu', 1, X'7B7D', 1, 1, 0, 1.0, NULL);
            INSERT INTO items (task_id, idx, input) VALUES ('t-old', 0, X'31');
            """
        let made = try Subprocess.run("/usr/bin/sqlite3", [dir.file("tasks.sqlite")], input: Data(old.utf8))
        #expect(made.status == 0, "\(made.stderr)")
        let store = try TaskStore(path: dir.file("tasks.sqlite"))
        let task = try #require(try await store.task("t-old"))
        #expect(task.remaining == 1 && task.cancelled == nil)
        #expect(try await store.tasks(owner: "alice", limit: 10).map(\.id) == ["t-old"])
        try await store.markCancelled("t-old")
        #expect(try await store.task("t-old")?.cancelled != nil)
    }
}
