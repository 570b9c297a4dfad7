import DLHubCore
import Foundation
import GRDB

/// Full-text search over published servables: a SQLite FTS5 index in the state directory.
///
/// The index is derived data: `rebuild(from:)` recreates it from the registry at start, and
/// publish and withdraw keep it current. Visibility is not the index's business: callers filter
/// the entries it returns with `AccessPolicy`.
public final class SearchIndex: Sendable {
    let db: LocalDatabase

    public init(path: String) throws(DLHubError) {
        var migrations = DatabaseMigrator()
        migrations.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE IF NOT EXISTS servables (
                        id INTEGER PRIMARY KEY,
                        owner TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
                        digest TEXT NOT NULL UNIQUE, title TEXT NOT NULL, description TEXT NOT NULL,
                        authors TEXT NOT NULL, domains TEXT NOT NULL, visible_to TEXT NOT NULL,
                        loader TEXT NOT NULL, input_type TEXT NOT NULL, output_type TEXT NOT NULL,
                        published TEXT NOT NULL, withdrawn INTEGER NOT NULL DEFAULT 0,
                        UNIQUE(owner, name, version));
                    CREATE VIRTUAL TABLE IF NOT EXISTS servables_fts USING fts5(
                        title, description, authors, domains, names, types, tokenize = 'unicode61');
                    """)
        }
        migrations.registerMigration("v2-dois") { db in
            try db.execute(sql: "ALTER TABLE servables ADD COLUMN dois TEXT NOT NULL DEFAULT ''")
        }
        db = try LocalDatabase(path: path, name: "search index", migrations: migrations)
    }

    /// Replaces the whole index with what the registry holds.
    public func rebuild(from records: [RegistryRecord]) async throws(DLHubError) {
        try await db.write { db in
            try db.execute(sql: "DELETE FROM servables; DELETE FROM servables_fts;")
            for r in records { try Self.insert(r, db) }
        }
    }

    public func add(_ record: RegistryRecord) async throws(DLHubError) {
        try await db.write { db in try Self.insert(record, db) }
    }

    public func markWithdrawn(owner: String, name: String, version: Int) async throws(DLHubError) {
        try await db.write { db in
            try db.execute(
                sql: "UPDATE servables SET withdrawn = 1 WHERE owner = ? AND name = ? AND version = ?", arguments: [owner, name, version])
        }
    }

    static let separator = "\u{1F}"

    static func insert(_ r: RegistryRecord, _ db: Database) throws {
        let m = r.metadata
        try db.execute(
            sql: "DELETE FROM servables_fts WHERE rowid IN (SELECT id FROM servables WHERE owner = ? AND name = ? AND version = ?)",
            arguments: [r.owner, r.name, r.version])
        try db.execute(sql: "DELETE FROM servables WHERE owner = ? AND name = ? AND version = ?", arguments: [r.owner, r.name, r.version])
        try db.execute(
            sql: """
                INSERT INTO servables (owner, name, version, digest, title, description, authors, domains, visible_to,
                    loader, input_type, output_type, published, withdrawn, dois)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                r.owner, r.name, r.version, r.digest, m.title, m.description, m.creators.joined(separator: separator),
                m.domains.joined(separator: separator), m.visibleTo.map(\.description).joined(separator: separator),
                m.loader.shortName, m.input.description, m.output.description, m.publicationDate ?? "", r.withdrawal != nil,
                r.dois.map { $0.lowercased() }.joined(separator: separator),
            ])
        let id = db.lastInsertedRowID
        let names = [r.owner, r.name, "\(r.owner)/\(r.name)", m.loader.shortName, m.loader.sdkTypeName].joined(separator: " ")
        let types = (m.input.searchTerms + m.output.searchTerms).joined(separator: " ")
        try db.execute(
            sql: "INSERT INTO servables_fts (rowid, title, description, authors, domains, names, types) VALUES (?, ?, ?, ?, ?, ?, ?)",
            arguments: [id, m.title, m.description, m.creators.joined(separator: " "), m.domains.joined(separator: " "), names, types])
    }

    /// Entries matching a free-text query (every word, as a prefix) and filters, best first.
    ///
    /// Withdrawn versions are left out unless `includeWithdrawn`.
    public func search(
        query: String?, owner: String?, name: String? = nil, includeWithdrawn: Bool = false
    ) async throws(DLHubError) -> [IndexEntry] {
        let words = (query ?? "").split(whereSeparator: { !($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == ".") })
            .map { $0.replacingOccurrences(of: "\"", with: "") }.filter { !$0.isEmpty }
        if words.isEmpty, let query, !query.trimmingCharacters(in: .whitespaces).isEmpty { return [] }
        var sql: String
        var args: [any DatabaseValueConvertible] = []
        if words.isEmpty {
            sql = "SELECT s.* FROM servables s WHERE 1"
        } else {
            sql = "SELECT s.* FROM servables_fts f JOIN servables s ON s.id = f.rowid WHERE servables_fts MATCH ?"
            args.append(words.map { "\"\($0)\"*" }.joined(separator: " "))
        }
        if let owner { sql += " AND s.owner = ?"; args.append(owner) }
        if let name { sql += " AND s.name = ?"; args.append(name) }
        if !includeWithdrawn { sql += " AND s.withdrawn = 0" }
        sql += words.isEmpty ? " ORDER BY s.owner, s.name, s.version" : " ORDER BY f.rank"
        let statement = sql
        let arguments = StatementArguments(args) ?? StatementArguments()
        return try await db.read { db in
            try Row.fetchAll(db, sql: statement, arguments: arguments).map(IndexEntry.init(row:))
        }
    }

    public func entry(digest: String) async throws(DLHubError) -> IndexEntry? {
        try await db.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM servables WHERE digest = ?", arguments: [digest]).map(IndexEntry.init(row:))
        }
    }
}

/// One row of the search index: what lists and search results show.
public struct IndexEntry: Sendable, Hashable {
    public var owner: String
    public var name: String
    public var version: Int
    public var digest: String
    public var title: String
    public var description: String
    public var authors: [String]
    public var domains: [String]
    public var visibleTo: [Principal]
    public var loader: String
    public var inputType: String
    public var outputType: String
    public var published: String
    public var withdrawn: Bool
    /// DOIs it is known by (lowercase): the site's and those its metadata names.
    public var dois: [String]

    init(row: Row) {
        func list(_ s: String) -> [String] { s.isEmpty ? [] : s.components(separatedBy: SearchIndex.separator) }
        owner = row["owner"]
        name = row["name"]
        version = row["version"]
        digest = row["digest"]
        title = row["title"]
        description = row["description"]
        authors = list(row["authors"])
        domains = list(row["domains"])
        visibleTo = list(row["visible_to"]).compactMap(Principal.init(parsing:))
        loader = row["loader"]
        inputType = row["input_type"]
        outputType = row["output_type"]
        published = row["published"]
        withdrawn = row["withdrawn"]
        dois = list(row["dois"])
    }

    public var json: JSONValue {
        [
            "id": .string("\(owner)/\(name)"), "owner": .string(owner), "name": .string(name), "version": .int(Int64(version)),
            "digest": .string(digest), "title": .string(title), "description": .string(description),
            "authors": .array(authors.map { .string($0) }), "domains": .array(domains.map { .string($0) }),
            "visible_to": .array(visibleTo.map { .string($0.description) }), "type": .string(loader),
            "input": .string(inputType), "output": .string(outputType), "published": .string(published),
            "withdrawn": .bool(withdrawn), "dois": .array(dois.map { .string($0) }),
        ]
    }
}
