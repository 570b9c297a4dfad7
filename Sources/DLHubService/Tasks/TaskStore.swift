import DLHubCore
import Foundation
import GRDB

/// Durable tasks: every accepted run request is written here (SQLite, WAL, in the state
/// directory) before the client hears "accepted", so it survives a `dlhubd` crash and is
/// completed after the restart. An item's result is stored once: a second answer for the same
/// item (from a pilot presumed lost) is ignored, so nothing is answered twice.
public final class TaskStore: Sendable {
    let db: LocalDatabase

    /// Where an item stands (`items.state`).
    public enum ItemState: Int, Sendable, DatabaseValueConvertible {
        case queued = 0
        case done = 1
        case failed = 2
    }

    /// `durable`: every accepted task survives a power loss too (`synchronous = FULL`), at the
    /// cost of an fsync per commit; by default it survives a crash of dlhubd.
    public init(path: String, durable: Bool = false) throws(DLHubError) {
        var migrations = DatabaseMigrator()
        migrations.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE IF NOT EXISTS tasks (
                        id TEXT PRIMARY KEY, owner TEXT NOT NULL, servable TEXT NOT NULL, digest TEXT NOT NULL, pool TEXT NOT NULL,
                        single INTEGER NOT NULL, parameters BLOB NOT NULL, item_count INTEGER NOT NULL,
                        remaining INTEGER NOT NULL, failed INTEGER NOT NULL DEFAULT 0,
                        created REAL NOT NULL, finished REAL);
                    CREATE TABLE IF NOT EXISTS items (
                        id INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL, idx INTEGER NOT NULL,
                        input BLOB NOT NULL, state INTEGER NOT NULL DEFAULT 0, output BLOB, error TEXT,
                        attempts INTEGER NOT NULL DEFAULT 0);
                    CREATE INDEX IF NOT EXISTS items_by_task ON items(task_id, idx);
                    CREATE INDEX IF NOT EXISTS items_queued ON items(state) WHERE state = 0;
                    CREATE INDEX IF NOT EXISTS tasks_finished ON tasks(finished);
                    """)
        }
        migrations.registerMigration("v2-unfinished-by-age") { db in
            try db.execute(sql: "CREATE INDEX IF NOT EXISTS tasks_unfinished ON tasks(created) WHERE finished IS NULL")
        }
        migrations.registerMigration("v3-cancel-and-list") { db in
            try db.execute(
                sql: """
                    ALTER TABLE tasks ADD COLUMN cancelled REAL;
                    CREATE INDEX IF NOT EXISTS tasks_by_owner ON tasks(owner, created);
                    """)
        }
        db = try LocalDatabase(path: path, name: "task store", durability: durable ? .full : .normal, migrations: migrations)
    }

    public struct NewTask: Sendable {
        public var id: String
        public var owner: String
        public var servable: String
        public var digest: String
        public var pool: String
        public var single: Bool
        public var parameters: [UInt8]
        public var inputs: [[UInt8]]
        /// The items' ids, given by the service (nil: numbered by the store).
        public var itemIDs: [UInt64]?
        /// Outcomes already known (a task that was live in memory until its wait ran out).
        public var outcomes: [ItemResult.Outcome?]
        public var created: Double

        public init(
            id: String, owner: String, servable: String, digest: String, pool: String, single: Bool, parameters: [UInt8], inputs: [[UInt8]],
            itemIDs: [UInt64]? = nil, outcomes: [ItemResult.Outcome?] = [], created: Double = Date().timeIntervalSince1970
        ) {
            self.id = id
            self.owner = owner
            self.servable = servable
            self.digest = digest
            self.pool = pool
            self.single = single
            self.parameters = parameters
            self.inputs = inputs
            self.itemIDs = itemIDs
            self.outcomes = outcomes
            self.created = created
        }
    }

    /// Writes a task and its items in one transaction; returns the item ids in input order.
    public func accept(_ task: NewTask) async throws(DLHubError) -> [UInt64] {
        try await db.write { db in
            let failed = task.outcomes.filter { if case .error? = $0 { return true } else { return false } }.count
            let done = task.outcomes.filter { $0 != nil }.count
            try db.execute(
                sql:
                    "INSERT INTO tasks (id, owner, servable, digest, pool, single, parameters, item_count, remaining, failed, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                arguments: [
                    task.id, task.owner, task.servable, task.digest, task.pool, task.single, Data(task.parameters), task.inputs.count,
                    task.inputs.count - done, failed, task.created,
                ])
            var ids: [UInt64] = []
            if let given = task.itemIDs {
                let statement = try db.makeStatement(
                    sql: "INSERT INTO items (id, task_id, idx, input, state, output, error) VALUES (?, ?, ?, ?, ?, ?, ?)")
                for (i, input) in task.inputs.enumerated() {
                    let outcome = i < task.outcomes.count ? task.outcomes[i] : nil
                    var state = ItemState.queued
                    var output: Data?
                    var error: String?
                    switch outcome {
                    case .output(let bytes)?: (state, output) = (.done, Data(bytes))
                    case .error(let message)?: (state, error) = (.failed, message)
                    case nil: break
                    }
                    try statement.execute(arguments: [Int64(bitPattern: given[i]), task.id, i, Data(input), state, output, error])
                }
                ids = given
            } else {
                let statement = try db.makeStatement(sql: "INSERT INTO items (task_id, idx, input) VALUES (?, ?, ?)")
                for (i, input) in task.inputs.enumerated() {
                    try statement.execute(arguments: [task.id, i, Data(input)])
                    ids.append(UInt64(db.lastInsertedRowID))
                }
            }
            return ids
        }
    }

    /// The largest item id ever given (ids are never reused, so a restarted service numbers on).
    public func maxItemID() async throws(DLHubError) -> UInt64 {
        try await db.read { db in
            let used = try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM items") ?? 0
            let sequence = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'items'") ?? 0
            return UInt64(max(0, used, sequence))
        }
    }

    /// Records outcomes; returns the ids of tasks this completed. Items already answered are skipped.
    public func complete(_ results: [ItemResult]) async throws(DLHubError) -> [String] {
        try await db.write { db in
            var finished: [String] = []
            let now = Date().timeIntervalSince1970
            for r in results {
                guard
                    let taskID = try String.fetchOne(
                        db, sql: "SELECT task_id FROM items WHERE id = ? AND state = ?",
                        arguments: [Int64(bitPattern: r.id), ItemState.queued])
                else { continue }
                switch r.outcome {
                case .output(let bytes):
                    try db.execute(
                        sql: "UPDATE items SET state = ?, output = ? WHERE id = ?",
                        arguments: [ItemState.done, Data(bytes), Int64(bitPattern: r.id)])
                    try db.execute(sql: "UPDATE tasks SET remaining = remaining - 1 WHERE id = ?", arguments: [taskID])
                case .error(let message):
                    try db.execute(
                        sql: "UPDATE items SET state = ?, error = ? WHERE id = ?",
                        arguments: [ItemState.failed, message, Int64(bitPattern: r.id)])
                    try db.execute(sql: "UPDATE tasks SET remaining = remaining - 1, failed = failed + 1 WHERE id = ?", arguments: [taskID])
                }
                if try Int.fetchOne(db, sql: "SELECT remaining FROM tasks WHERE id = ?", arguments: [taskID]) == 0 {
                    try db.execute(sql: "UPDATE tasks SET finished = ? WHERE id = ?", arguments: [now, taskID])
                    finished.append(taskID)
                }
            }
            return finished
        }
    }

    /// Ids of a task's items not answered yet.
    public func unanswered(task id: String) async throws(DLHubError) -> [UInt64] {
        try await db.read { db in
            try Int64.fetchAll(db, sql: "SELECT id FROM items WHERE task_id = ? AND state = ?", arguments: [id, ItemState.queued])
                .map { UInt64(bitPattern: $0) }
        }
    }

    /// Marks a task cancelled by its owner (its unanswered items are failed separately).
    public func markCancelled(_ id: String, at time: Double = Date().timeIntervalSince1970) async throws(DLHubError) {
        try await db.write { db in
            try db.execute(sql: "UPDATE tasks SET cancelled = ? WHERE id = ? AND cancelled IS NULL", arguments: [time, id])
        }
    }

    /// A user's tasks, newest first, without their items.
    public func tasks(owner: String, limit: Int) async throws(DLHubError) -> [TaskRecord] {
        try await db.read { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM tasks WHERE owner = ? ORDER BY created DESC LIMIT ?", arguments: [owner, max(1, limit)]
            ).map { Self.record($0, items: []) }
        }
    }

    static func record(_ t: Row, items: [TaskRecord.Item]) -> TaskRecord {
        TaskRecord(
            id: t["id"], owner: t["owner"], servable: t["servable"], digest: t["digest"], pool: t["pool"], single: t["single"],
            itemCount: t["item_count"], remaining: t["remaining"], failed: t["failed"], created: t["created"], finished: t["finished"],
            cancelled: t["cancelled"], items: items)
    }

    /// Counts an attempt on items whose pilot was lost; returns their attempt counts.
    public func countAttempt(_ itemIDs: [UInt64]) async throws(DLHubError) -> [UInt64: Int] {
        try await db.write { db in
            var out: [UInt64: Int] = [:]
            for id in itemIDs {
                try db.execute(sql: "UPDATE items SET attempts = attempts + 1 WHERE id = ?", arguments: [Int64(bitPattern: id)])
                out[id] = try Int.fetchOne(db, sql: "SELECT attempts FROM items WHERE id = ?", arguments: [Int64(bitPattern: id)]) ?? 0
            }
            return out
        }
    }

    /// Accepted but not answered, oldest first, a page at a time (items after `after`): what a
    /// restart must queue again.
    public func unfinished(after: UInt64 = 0, limit: Int = 10_000) async throws(DLHubError) -> [PendingItem] {
        try await db.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT i.id, i.task_id, i.input, t.owner, t.servable, t.digest, t.parameters FROM items i JOIN tasks t ON t.id = i.task_id
                    WHERE i.state = ? AND i.id > ? ORDER BY i.id LIMIT ?
                    """, arguments: [ItemState.queued, Int64(bitPattern: after), limit]
            ).map { row in
                PendingItem(
                    itemID: UInt64(bitPattern: row["id"]), taskID: row["task_id"], owner: row["owner"], input: Array(row["input"] as Data),
                    servable: row["servable"], digest: row["digest"], parameters: Array(row["parameters"] as Data))
            }
        }
    }

    public struct PendingItem: Sendable {
        public var itemID: UInt64
        public var taskID: String
        public var owner: String
        public var input: [UInt8]
        public var servable: String
        public var digest: String
        public var parameters: [UInt8]
    }

    public func task(_ id: String) async throws(DLHubError) -> TaskRecord? {
        try await db.read { db in
            guard let t = try Row.fetchOne(db, sql: "SELECT * FROM tasks WHERE id = ?", arguments: [id]) else { return nil }
            let items = try Row.fetchAll(db, sql: "SELECT state, output, error FROM items WHERE task_id = ? ORDER BY idx", arguments: [id])
                .map { row in
                    TaskRecord.Item(
                        state: TaskStore.ItemState(rawValue: row["state"]) ?? .queued, output: (row["output"] as Data?).map { Array($0) },
                        error: row["error"])
                }
            return Self.record(t, items: items)
        }
    }

    /// Fails what is still unanswered in tasks accepted before `cutoff` (older than the retention:
    /// nothing waits for ever); returns the items failed.
    public func expire(createdBefore cutoff: Double) async throws(DLHubError) -> [ItemResult] {
        try await db.read { db in
            try Int64.fetchAll(
                db,
                sql: """
                    SELECT i.id FROM items i JOIN tasks t ON t.id = i.task_id
                    WHERE t.finished IS NULL AND t.created < ? AND i.state = ? LIMIT 100000
                    """, arguments: [cutoff, ItemState.queued]
            ).map {
                ItemResult(
                    id: UInt64(bitPattern: $0),
                    outcome: .error("not answered within the service's retention time (result_retention_seconds); send it again"))
            }
        }
    }

    /// Deletes finished tasks older than `seconds`.
    public func purge(finishedBefore cutoff: Double) async throws(DLHubError) -> Int {
        try await db.write { db in
            try db.execute(
                sql: "DELETE FROM items WHERE task_id IN (SELECT id FROM tasks WHERE finished IS NOT NULL AND finished < ?)",
                arguments: [cutoff])
            try db.execute(sql: "DELETE FROM tasks WHERE finished IS NOT NULL AND finished < ?", arguments: [cutoff])
            return db.changesCount
        }
    }
}

/// A task as stored: its items' outcomes in input order.
public struct TaskRecord: Sendable {
    public var id: String
    public var owner: String
    public var servable: String
    public var digest: String
    public var pool: String
    public var single: Bool
    public var itemCount: Int
    public var remaining: Int
    public var failed: Int
    public var created: Double
    public var finished: Double?
    /// When its owner cancelled it (items not yet running were failed then).
    public var cancelled: Double?
    public var items: [Item]

    public struct Item: Sendable {
        public var state: TaskStore.ItemState
        public var output: [UInt8]?
        public var error: String?
    }

    /// `completed`, `failed`, `completed_with_errors` or `cancelled` once finished; before that the service
    /// says `queued` or `running` from what its dispatcher holds.
    public var status: String? {
        guard finished != nil else { return nil }
        if cancelled != nil, failed > 0 { return "cancelled" }
        return failed == 0 ? "completed" : (failed == itemCount ? "failed" : "completed_with_errors")
    }
}
