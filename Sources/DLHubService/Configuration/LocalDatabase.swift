import DLHubCore
import GRDB

/// A SQLite database in the state directory (WAL mode, through GRDB's pool), with its schema
/// evolved by GRDB migrations and its failures turned into `DLHubError`s that name the store.
struct LocalDatabase: Sendable {
    let pool: DatabasePool
    let name: String

    /// How hard a commit is made durable (`PRAGMA synchronous` under WAL).
    enum Durability: String, Sendable {
        /// A commit survives a crash of dlhubd (SIGKILL) without an fsync per commit; a power loss
        /// may drop the last ones.
        case normal = "NORMAL"
        /// A commit survives a power loss too: an fsync per commit.
        case full = "FULL"
    }

    /// Opens (creating if needed) the database and runs the migrations it has not had yet.
    init(path: String, name: String, durability: Durability = .normal, migrations: DatabaseMigrator) throws(DLHubError) {
        self.name = name
        do {
            var config = Configuration()
            config.busyMode = .timeout(10)
            config.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = \(durability.rawValue)") }
            pool = try DatabasePool(path: path, configuration: config)
            try migrations.migrate(pool)
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
