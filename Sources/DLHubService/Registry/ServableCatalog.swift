import DLHubArchive
import DLHubCore
import Foundation
import Logging
import Metrics

/// Publication and discovery with access control: the registry (truth) plus the search index.
///
/// Every method takes the caller; what the caller may not see behaves as if it did not exist,
/// so a private servable's existence never leaks through a 403.
public final class ServableCatalog: Sendable {
    public let registry: Registry
    public let index: SearchIndex
    let logger: Logger
    /// Published versions are immutable, so their records are read from the shared filesystem
    /// once; withdrawal (which goes through this catalog) drops the cached copy.
    private let cache = RecordCache()
    /// Whether a digest is being recomputed (`verify`): one at a time.
    let verifying = LockedBox(false)
    private let problems = LockedBox<[Registry.Problem]>([])
    /// The versions of each `owner/name` as the index has them, so that running `owner/name`
    /// costs no query; dropped on every publish and withdrawal. `generation` counts those
    /// changes, so a list read before a change is never kept after it.
    private let versions = LockedBox<(generation: UInt64, lists: [String: [IndexEntry]])>((0, [:]))
    let publishes = Counter(label: "dlhub_publish_total")
    let withdrawals = Counter(label: "dlhub_withdraw_total")

    public init(registry: Registry, index: SearchIndex, logger: Logger) {
        self.registry = registry
        self.index = index
        self.logger = logger
    }

    /// Rebuilds the search index from the registry; call at start.
    public func rebuildIndex() async throws(DLHubError) {
        let abandoned = registry.removeAbandonedStaging()
        if abandoned > 0 { logger.info("removed half-written publications left by a crash", metadata: ["count": "\(abandoned)"]) }
        let registry = self.registry, logger = self.logger
        let scan = try await BlockingIO.run { registry.allRecords(logger: logger) }
        var problems = scan.problems
        // A digest names one version for ever: a second directory claiming it (a copy, a forgery)
        // is skipped, as is one that claims none.
        var owners: [String: String] = [:]
        var records: [RegistryRecord] = []
        for record in scan.records {
            let id = "\(record.id)@\(record.version)"
            if record.digest.isEmpty || ContentDigest.isWellFormed(record.digest) == false {
                problems.append(.init(servable: id, directory: record.directory, reason: "its servable.json has no valid dlhub.identifier"))
            } else if let first = owners[record.digest] {
                problems.append(
                    .init(servable: id, directory: record.directory, reason: "its digest \(record.digest) is already that of \(first)"))
            } else {
                owners[record.digest] = id
                records.append(record)
            }
        }
        for problem in problems where !scan.problems.contains(problem) {
            logger.warning("skipping a registry entry", metadata: ["servable": "\(problem.servable)", "reason": "\(problem.reason)"])
        }
        try await index.rebuild(from: records)
        indexChanged()
        self.problems.value = problems
        logger.info(
            "search index rebuilt from the registry",
            metadata: ["registry.versions": "\(records.count)", "registry.skipped": "\(problems.count)"])
    }

    /// Versions skipped at the last start, and why.
    public var registryProblems: [Registry.Problem] { problems.value }

    /// Publishes the upload in the file `archive` (tar, tar.gz or zip) for the caller.
    public func publish(
        archive: String, owner requestedOwner: String?, caller: Caller, limits: ArchiveLimits
    ) async throws(DLHubError)
        -> RegistryRecord
    {
        let owner = requestedOwner ?? caller.login
        guard owner == caller.login else {
            throw DLHubError(
                .forbidden,
                "you are '\(caller.login)' and cannot publish as '\(owner)'; only \(owner) can publish servables named \(owner)/...")
        }
        let registry = self.registry
        let record = try await BlockingIO.run { () throws(DLHubError) in
            try registry.publish(archive: archive, owner: owner, limits: limits)
        }
        try await index.add(record)
        indexChanged()
        publishes.increment()
        logger.info(
            "published",
            metadata: ["servable": "\(record.id)@\(record.version)", "servable.digest": "\(record.digest)", "user": "\(caller.login)"])
        return record
    }

    /// Resolves a reference to a version the caller may see; tombstones resolve too.
    public func resolve(_ reference: ServableReference, caller: Caller) async throws(DLHubError) -> RegistryRecord {
        let notFound = DLHubError(.notFound, "no servable '\(reference)' that you can see; `dlhub search` lists what is available to you")
        let record: RegistryRecord?
        switch reference {
        case .digest(let digest):
            guard let entry = try await index.entry(digest: digest) else { throw notFound }
            record = try cachedRecord(owner: entry.owner, name: entry.name, version: entry.version)
        case .version(let owner, let name, let version):
            record = try cachedRecord(owner: owner, name: name, version: version)
        case .latest(let owner, let name):
            // The newest version the caller may see that is not withdrawn, else the newest such
            // tombstone (from the index: no directory listing on the shared filesystem per request).
            let versions = try await visibleVersions(owner: owner, name: name, caller: caller)
            let newest = versions.filter { !$0.withdrawn }.max { $0.version < $1.version } ?? versions.max { $0.version < $1.version }
            record = try newest.flatMap { e throws(DLHubError) in try cachedRecord(owner: owner, name: name, version: e.version) }
        }
        guard let record, AccessPolicy.canSee(owner: record.owner, visibleTo: record.metadata.visibleTo, caller: caller) else {
            throw notFound
        }
        return record
    }

    /// The versions of `owner/name` the caller may see (withdrawn ones included), from the index.
    public func visibleVersions(owner: String, name: String, caller: Caller) async throws(DLHubError) -> [IndexEntry] {
        let key = owner + "/" + name
        let (generation, cached) = versions.update { ($0.generation, $0.lists[key]) }
        let all: [IndexEntry]
        if let cached {
            all = cached
        } else {
            all = try await index.search(query: nil, owner: owner, name: name, includeWithdrawn: true)
            versions.update {
                guard $0.generation == generation else { return }
                if $0.lists.count > 10_000 { $0.lists.removeAll() }
                $0.lists[key] = all
            }
        }
        return all.filter { AccessPolicy.canSee(owner: $0.owner, visibleTo: $0.visibleTo, caller: caller) }
    }

    /// The index changed: forget the version lists read from it.
    func indexChanged() {
        versions.update {
            $0.generation += 1
            $0.lists.removeAll()
        }
    }

    /// A version's record, from the cache or the registry.
    public func cachedRecord(owner: String, name: String, version: Int) throws(DLHubError) -> RegistryRecord? {
        let key = "\(owner)/\(name)@\(version)"
        if let hit = cache.get(key) { return hit }
        guard let record = try registry.record(owner: owner, name: name, version: version) else { return nil }
        cache.put(key, record)
        return record
    }

    /// Latest visible version of each servable matching the query and filters.
    ///
    /// `author` matches part of a creator's name, any case; `doi` a DOI the version is known by
    /// (the site's, or one its metadata names), with or without `https://doi.org/`.
    public func search(
        query: String?, owner: String?, domain: String?, author: String? = nil, doi: String? = nil, limit: Int, caller: Caller
    ) async throws(DLHubError) -> [IndexEntry] {
        var latest: [String: IndexEntry] = [:]
        var order: [String] = []
        let wantedDOI = doi.map { Self.normalizeDOI($0) }
        for entry in try await index.search(query: query, owner: owner, includeWithdrawn: wantedDOI != nil)
        where AccessPolicy.canSee(owner: entry.owner, visibleTo: entry.visibleTo, caller: caller) {
            if let domain, !entry.domains.contains(where: { $0.caseInsensitiveCompare(domain) == .orderedSame }) { continue }
            if let author, !entry.authors.contains(where: { $0.range(of: author, options: .caseInsensitive) != nil }) { continue }
            if let wantedDOI, !entry.dois.contains(wantedDOI) { continue }
            let id = "\(entry.owner)/\(entry.name)"
            if let existing = latest[id] {
                if entry.version > existing.version { latest[id] = entry }
            } else {
                latest[id] = entry
                order.append(id)
            }
        }
        return order.prefix(limit).compactMap { latest[$0] }
    }

    public func withdraw(
        owner: String, name: String, version: Int, reason: String, caller: Caller
    ) async throws(DLHubError) -> RegistryRecord {
        let record = try await resolve(.version(owner: owner, name: name, version: version), caller: caller)
        guard record.owner == caller.login else {
            throw DLHubError(.forbidden, "only \(record.owner) can withdraw \(record.id)@\(version)")
        }
        if record.withdrawal != nil {
            throw DLHubError(.withdrawn, "\(record.id)@\(version) is already withdrawn")
        }
        let registry = self.registry
        try await BlockingIO.run { () throws(DLHubError) in
            try registry.withdraw(owner: owner, name: name, version: version, by: caller.login, reason: reason)
        }
        cache.remove("\(owner)/\(name)@\(version)")
        try await index.markWithdrawn(owner: owner, name: name, version: version)
        indexChanged()
        withdrawals.increment()
        logger.info("withdrawn", metadata: ["servable": "\(record.id)@\(version)", "user": "\(caller.login)"])
        return try registry.record(owner: owner, name: name, version: version) ?? record
    }
}

extension ServableCatalog {
    /// `https://doi.org/10.1/X` or `doi:10.1/X` -> `10.1/x` (DOIs are case-insensitive).
    static func normalizeDOI(_ text: String) -> String {
        var t = text.trimmingCharacters(in: .whitespaces)
        for prefix in ["https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "doi:"] where t.lowercased().hasPrefix(prefix) {
            t = String(t.dropFirst(prefix.count))
        }
        return t.lowercased()
    }

    /// The owner records the DOI their site minted for a version. The version's files and digest
    /// do not change; `describe`, `cite` and `search --doi` show it from then on.
    public func attachDOI(
        owner: String, name: String, version: Int, doi raw: String, caller: Caller
    ) async throws(DLHubError) -> RegistryRecord {
        let record = try await resolve(.version(owner: owner, name: name, version: version), caller: caller)
        guard record.owner == caller.login else {
            throw DLHubError(.forbidden, "only \(record.owner) can attach a DOI to \(record.id)@\(version)")
        }
        var doi = raw.trimmingCharacters(in: .whitespaces)
        for prefix in ["https://doi.org/", "http://doi.org/", "doi:"] where doi.lowercased().hasPrefix(prefix) {
            doi = String(doi.dropFirst(prefix.count))
        }
        guard Citation.isDOI(doi) else {
            throw DLHubError(.badRequest, "'\(raw.prefix(100))' is not a DOI; give the one your site minted, e.g. 10.5555/dlhub.iris.1")
        }
        let taken = try await index.search(query: nil, owner: nil, includeWithdrawn: true).first {
            $0.dois.contains(doi.lowercased()) && $0.digest != record.digest
        }
        if let taken {
            // Who holds it is said only to a caller who may see that servable: a private one's
            // name is not given away by trying its DOI.
            guard AccessPolicy.canSee(owner: taken.owner, visibleTo: taken.visibleTo, caller: caller) else {
                throw DLHubError(
                    .conflict, "\(doi) already names another servable version; a DOI names one version: check the DOI your site minted")
            }
            throw DLHubError(.conflict, "\(doi) already names \(taken.owner)/\(taken.name)@\(taken.version); a DOI names one version")
        }
        let registry = self.registry, attached = doi
        try await BlockingIO.run { () throws(DLHubError) in
            try registry.attachDOI(owner: owner, name: name, version: version, doi: attached, by: caller.login)
        }
        cache.remove("\(owner)/\(name)@\(version)")
        guard let updated = try registry.record(owner: owner, name: name, version: version) else { return record }
        try await index.add(updated)
        indexChanged()
        logger.info("DOI attached", metadata: ["servable": "\(record.id)@\(version)", "doi": "\(doi)", "user": "\(caller.login)"])
        return updated
    }

    /// Recomputes a version's digest from its files on disk (one at a time: hashing is costly).
    public func verify(_ record: RegistryRecord) async throws(DLHubError) -> (digest: String, files: [ContentDigest.ManifestEntry]) {
        guard record.withdrawal == nil else {
            throw DLHubError(
                .withdrawn,
                "\(record.id)@\(record.version) was withdrawn: its files are gone; its digest \(record.digest) stays in its tombstone")
        }
        let started = verifying.update { busy -> Bool in
            if busy { return false }
            busy = true
            return true
        }
        guard started else {
            throw DLHubError(.unavailable, "another verification is running; try again in a minute")
        }
        defer { verifying.value = false }
        let registry = self.registry
        return try await BlockingIO.run { () throws(DLHubError) in try registry.recomputeDigest(record) }
    }
}

extension RegistryRecord {
    /// Every DOI this version is known by: the site's, and those its metadata names.
    public var dois: [String] { Citation(metadata: metadata.document, digest: digest, url: "", siteDOI: siteDOI).dois }

    /// What `describe` returns: identifiers, state, and the whole metadata document.
    public var json: JSONValue {
        var out: [String: JSONValue] = [
            "id": .string(id), "owner": .string(owner), "name": .string(name), "version": .int(Int64(version)),
            "digest": .string(digest), "title": .string(metadata.title), "type": .string(metadata.loader.shortName),
            "input": .string(metadata.input.description), "output": .string(metadata.output.description),
            "visible_to": .array(metadata.visibleTo.map { .string($0.description) }),
            "metadata": metadata.document,
        ]
        // `withdrawn` is a boolean here as in search results; the tombstone is `withdrawal`.
        out["withdrawn"] = .bool(withdrawal != nil)
        if let w = withdrawal {
            out["withdrawal"] = ["by": .string(w.by), "at": .string(w.at), "reason": .string(w.reason)]
        } else {
            out["withdrawal"] = .null
        }
        return .object(out)
    }
}

/// A small thread-safe map of registry records.
final class RecordCache: @unchecked Sendable {
    private var records: [String: RegistryRecord] = [:]
    private let lock = NSLock()

    func get(_ key: String) -> RegistryRecord? {
        lock.lock()
        defer { lock.unlock() }
        return records[key]
    }

    func put(_ key: String, _ record: RegistryRecord) {
        lock.lock()
        defer { lock.unlock() }
        if records.count > 10_000 { records.removeAll() }
        records[key] = record
    }

    func remove(_ key: String) {
        lock.lock()
        defer { lock.unlock() }
        records.removeValue(forKey: key)
    }
}
