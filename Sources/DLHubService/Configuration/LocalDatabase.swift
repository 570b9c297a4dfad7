import DLHubCore
import GRDB

/// A SQLite database in the state directory (WAL mode, through GRDB's pool), with its failures
/// turned into `DLHubError`s that name which store failed.
struct LocalDatabase: Sendable {
    let pool: DatabasePool
    let name: String

    /// Opens (creating if needed) the database and applies `schema`, which must be idempotent.
    init(path: String, name: String, schema: String) throws(DLHubError) {
        self.name = name
        do {
            var config = Configuration()
            config.busyMode = .timeout(10)
            // WAL with synchronous=NORMAL: a commit survives a crash of dlhubd (SIGKILL) without an
            // fsync per request; only a power loss may drop the last commits.
            config.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = NORMAL") }
            pool = try DatabasePool(path: path, configuration: config)
            try pool.write { db in try db.execute(sql: schema) }
        } catch {
            throw DLHubError(
                .internal, "cannot open the \(name) at \(path): \(error); check the state directory (local disk, writable)", cause: error)
        }
    }

    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws(DLHubError) -> T {
        do { return try await pool.write(body) } catch {
            throw DLHubError(.internal, "\(name) write failed: \(error)", cause: error)
        }
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws(DLHubError) -> T {
        do { return try await pool.read(body) } catch {
            throw DLHubError(.internal, "\(name) read failed: \(error)", cause: error)
        }
    }
}
