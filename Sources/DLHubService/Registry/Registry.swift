import DLHubArchive
import DLHubCore
import Foundation
import Glibc
import Logging

/// The registry on the shared filesystem: the source of truth for every published servable.
///
/// Layout under `root`:
/// - `servables/<owner>/<name>/<version>/` holds `servable.json` and the servable's files;
///   a withdrawn version keeps `servable.json` and gains `withdrawn.json` (a tombstone).
/// - `.staging/` holds publications being written; a publication becomes visible by one
///   `rename(2)` of its staging directory to its version directory, so a reader never sees half
///   a servable, and two publishers racing for the same number cannot both win it.
/// - `service.json` tells clients on any login node where `dlhubd` listens.
public struct Registry: Sendable {
    public let root: String
    var servablesDirectory: String { root + "/servables" }
    var stagingDirectory: String { root + "/.staging" }

    public init(root: String) throws(DLHubError) {
        self.root = root
        do {
            let fm = FileManager.default
            try fm.createDirectory(atPath: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            // Servable files are read by the service and its pilots only: visibility is the service's to enforce.
            try fm.createDirectory(atPath: root + "/servables", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try fm.createDirectory(atPath: root + "/.staging", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw DLHubError(
                .internal, "cannot create the registry at \(root): \(error.localizedDescription); check registry_root and its permissions",
                cause: error)
        }
        // Whoever else could write here could plant a servable, or a service.json that sends
        // every client elsewhere: refuse to serve from such a registry.
        try Self.requireOwned(root, mode: 0o022, fix: "chown \(Self.serviceLogin) \(root) && chmod go-w \(root)")
        for dir in [root + "/servables", root + "/.staging"] {
            try Self.requireOwned(dir, mode: 0o077, fix: "chown \(Self.serviceLogin) \(dir) && chmod 700 \(dir)")
        }
    }

    static var serviceLogin: String { getpwuid(getuid()).map { String(cString: $0.pointee.pw_name) } ?? String(getuid()) }

    /// Throws unless `path` is a real directory owned by the service account with none of the
    /// `mode` bits set.
    static func requireOwned(_ path: String, mode forbidden: mode_t, fix: String) throws(DLHubError) {
        let attributes: [FileAttributeKey: Any]
        do { attributes = try FileManager.default.attributesOfItem(atPath: path) } catch {
            throw DLHubError(.internal, "cannot inspect \(path): \(error.localizedDescription)")
        }
        let owner = (attributes[.ownerAccountID] as? NSNumber)?.uint32Value
        let permissions = mode_t((attributes[.posixPermissions] as? NSNumber)?.uint16Value ?? 0o777)
        guard attributes[.type] as? FileAttributeType == .typeDirectory else {
            throw DLHubError(.internal, "\(path) is not a directory (a link?); the registry must be a real directory. Fix: \(fix)")
        }
        guard owner == getuid() else {
            throw DLHubError(
                .internal,
                "\(path) belongs to uid \(owner.map(String.init) ?? "?"), not to the service account \(serviceLogin). Fix: \(fix)")
        }
        guard permissions & forbidden == 0 else {
            throw DLHubError(
                .internal,
                "\(path) has mode \(String(permissions, radix: 8)): others could write (or read) what only the service may. Fix: \(fix)")
        }
    }

    public func versionDirectory(owner: String, name: String, version: Int) -> String {
        "\(servablesDirectory)/\(owner)/\(name)/\(version)"
    }

    /// Removes publications a crash left half-written. Call at start, before accepting writes.
    public func removeAbandonedStaging() -> Int {
        let fm = FileManager.default
        let items = (try? fm.contentsOfDirectory(atPath: stagingDirectory)) ?? []
        for item in items { try? fm.removeItem(atPath: "\(stagingDirectory)/\(item)") }
        return items.count
    }

    /// Version numbers used so far for `owner/name`, withdrawn ones included, ascending.
    public func versions(owner: String, name: String) -> [Int] {
        let dir = "\(servablesDirectory)/\(owner)/\(name)"
        let items = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return items.compactMap { Int($0) }.filter { $0 >= 1 }.sorted()
    }

    /// The record for one version, or nil when it does not exist.
    public func record(owner: String, name: String, version: Int) throws(DLHubError) -> RegistryRecord? {
        let dir = versionDirectory(owner: owner, name: name, version: version)
        guard let data = FileManager.default.contents(atPath: dir + "/servable.json") else { return nil }
        let doc: JSONValue
        do { doc = try JSONValue.parse(Array(data)) } catch {
            throw DLHubError(.internal, "\(dir)/servable.json is corrupt: \(error)", cause: error)
        }
        let metadata = try ServableMetadata.validate(doc)
        var withdrawal: Withdrawal?
        if let w = FileManager.default.contents(atPath: dir + "/withdrawn.json"), let json = try? JSONValue.parse(Array(w)) {
            withdrawal = Withdrawal(
                by: json["by"]?.stringValue ?? "", at: json["at"]?.stringValue ?? "", reason: json["reason"]?.stringValue ?? "")
        }
        var siteDOI: String?
        if let side = FileManager.default.contents(atPath: identifiersFile(owner: owner, name: name, version: version)),
            let json = try? JSONValue.parse(Array(side))
        {
            siteDOI = json["doi"]?.stringValue
        }
        return RegistryRecord(
            owner: owner, name: name, version: version, metadata: metadata, directory: dir, withdrawal: withdrawal, siteDOI: siteDOI)
    }

    /// The site's identifiers for a version (a DOI minted for it): a side record beside the
    /// version's directory, so attaching one changes neither its files nor its digest.
    public func identifiersFile(owner: String, name: String, version: Int) -> String {
        "\(servablesDirectory)/\(owner)/\(name)/\(version).identifiers.json"
    }

    /// Records the DOI the site minted for a version (replacing an earlier one).
    public func attachDOI(owner: String, name: String, version: Int, doi: String, by login: String, now: Date = Date()) throws(DLHubError) {
        let record: JSONValue = [
            "doi": .string(doi), "attached_by": .string(login), "attached_at": .string(ISO8601DateFormatter().string(from: now)),
        ]
        let temp = "\(stagingDirectory)/identifiers-\(UUID().uuidString).json"
        try writeFileSynced(temp, record.encoded(pretty: true))
        chmod(temp, 0o644)
        let target = identifiersFile(owner: owner, name: name, version: version)
        guard rename(temp, target) == 0 else {
            let e = String(cString: strerror(errno))
            unlink(temp)
            throw DLHubError(.internal, "cannot record the DOI of \(owner)/\(name)@\(version): \(e)")
        }
        fsyncDirectory((target as NSString).deletingLastPathComponent)
    }

    /// The digest of a version recomputed from its files as they are on disk now, with the
    /// manifest it was computed over (the algorithm: `docs/citation.md`).
    public func recomputeDigest(_ record: RegistryRecord) throws(DLHubError) -> (digest: String, files: [ContentDigest.ManifestEntry]) {
        let files: [ContentDigest.ManifestEntry]
        do { files = try ContentDigest.manifest(ofDirectory: record.directory) } catch {
            throw DLHubError(.internal, "cannot read the files of \(record.id)@\(record.version): \(error)")
        }
        guard let data = FileManager.default.contents(atPath: record.directory + "/servable.json"),
            let doc = try? JSONValue.parse(Array(data))
        else { throw DLHubError(.internal, "cannot read \(record.directory)/servable.json") }
        return (ContentDigest.compute(metadata: doc, files: files), files)
    }

    /// A version directory the service cannot serve, and why: skipped at start, never a reason
    /// not to start (`dlhub admin registry` lists them).
    public struct Problem: Sendable, Hashable {
        public var servable: String
        public var directory: String
        public var reason: String

        public var json: JSONValue { ["servable": .string(servable), "directory": .string(directory), "reason": .string(reason)] }
    }

    /// Every readable version of every servable, for rebuilding the search index, and the
    /// versions skipped. Withdrawals a crash interrupted are completed on the way.
    public func allRecords(logger: Logger) -> (records: [RegistryRecord], problems: [Problem]) {
        let fm = FileManager.default
        var out: [RegistryRecord] = []
        var problems: [Problem] = []
        for owner in ((try? fm.contentsOfDirectory(atPath: servablesDirectory)) ?? []).sorted() {
            for name in ((try? fm.contentsOfDirectory(atPath: "\(servablesDirectory)/\(owner)")) ?? []).sorted() {
                for version in versions(owner: owner, name: name) {
                    do throws(DLHubError) {
                        guard let r = try record(owner: owner, name: name, version: version) else { continue }
                        if r.withdrawal != nil { completeWithdrawal(r.directory) }
                        out.append(r)
                    } catch {
                        logger.warning(
                            "skipping an unreadable registry entry",
                            metadata: ["servable": "\(owner)/\(name)@\(version)", "error": "\(error.message)"])
                        problems.append(
                            Problem(
                                servable: "\(owner)/\(name)@\(version)",
                                directory: versionDirectory(owner: owner, name: name, version: version),
                                reason: error.message))
                    }
                }
            }
        }
        return (out, problems)
    }

    /// Removes what a withdrawal left behind when a crash interrupted it (all but the metadata
    /// and the tombstone).
    func completeWithdrawal(_ dir: String) {
        let fm = FileManager.default
        for item in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] where item != "servable.json" && item != "withdrawn.json" {
            try? fm.removeItem(atPath: "\(dir)/\(item)")
        }
    }

    /// Top-level names the registry writes into a version's directory itself.
    static let reservedFileNames: Set<String> = ["withdrawn.json"]

    /// Publishes an upload (a tar, tar.gz or zip file) as the next version of `owner/<dlhub.name>`.
    ///
    /// The upload is unpacked into `.staging/` (safely: see `ArchiveExtractor`) and validated
    /// there; it becomes visible by an atomic rename. Returns the new record.
    public func publish(archive: String, owner: String, limits: ArchiveLimits, now: Date = Date()) throws(DLHubError) -> RegistryRecord {
        let fm = FileManager.default
        let staging = "\(stagingDirectory)/\(UUID().uuidString)"
        guard mkdir(staging, 0o755) == 0 else {
            throw DLHubError(.internal, "cannot create \(staging): \(String(cString: strerror(errno))); check the registry's permissions")
        }
        var published = false
        defer { if !published { try? fm.removeItem(atPath: staging) } }

        let unpacked = try ArchiveExtractor.unpack(archive: archive, into: staging, limits: limits)
        // Files the registry writes beside servable.json are the registry's word: an upload that
        // carried its own tombstone would be shown as withdrawn by someone who never withdrew it.
        if let reserved = unpacked.paths.first(where: { Self.reservedFileNames.contains($0) }) {
            throw DLHubError(
                .invalidMetadata,
                "the upload has a file named \(reserved) at its top level, a name the registry keeps for itself; rename or remove it and publish again"
            )
        }
        guard let metadataBytes = unpacked.metadata else {
            throw DLHubError(
                .invalidMetadata, "the upload has no servable.json at its top level; run `dlhub init` in the servable directory to make one"
            )
        }
        let doc: JSONValue
        do { doc = try JSONValue.parse(metadataBytes) } catch {
            throw DLHubError(.invalidMetadata, "servable.json is not valid JSON: \(error)")
        }
        let metadata = try ServableMetadata.validate(doc, files: unpacked.paths)
        if let declared = doc["dlhub"]?["owner"]?.stringValue, declared != owner {
            throw DLHubError(
                .forbidden,
                "servable.json names owner '\(declared)' but you are '\(owner)'; only \(declared) can publish \(declared)/\(metadata.name)")
        }
        let manifest = unpacked.manifest

        let nameDir = "\(servablesDirectory)/\(owner)/\(metadata.name)"
        do {
            try fm.createDirectory(atPath: nameDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        } catch {
            throw DLHubError(.internal, "cannot create \(nameDir): \(error.localizedDescription)", cause: error)
        }
        let date = ISO8601DateFormatter().string(from: now)
        var version = (versions(owner: owner, name: metadata.name).last ?? 0) + 1
        for _ in 0..<1000 {
            var final = metadata.published(owner: owner, version: version, identifier: nil, date: date)
            let digest = ContentDigest.compute(metadata: final, files: manifest)
            final = final.setting(["dlhub", "identifier"], to: .string(digest))
            try writeFileSynced(staging + "/servable.json", final.encoded(pretty: true))
            let target = "\(nameDir)/\(version)"
            fsyncTree(staging)
            if rename(staging, target) == 0 {
                published = true
                fsyncDirectory(nameDir)
                fsyncDirectory(servablesDirectory + "/" + owner)
                var record = RegistryRecord(
                    owner: owner, name: metadata.name, version: version, metadata: metadata, directory: target, withdrawal: nil)
                record.metadata.document = final
                return record
            }
            let err = errno
            guard err == EEXIST || err == ENOTEMPTY else {
                throw DLHubError(.internal, "cannot publish into \(target): \(String(cString: strerror(err)))")
            }
            // Someone else took this number first: take the next one.
            version = max(version + 1, (versions(owner: owner, name: metadata.name).last ?? 0) + 1)
        }
        throw DLHubError(.conflict, "could not allocate a version for \(owner)/\(metadata.name); try again")
    }

    /// Withdraws a version: writes the tombstone, then removes the servable's files.
    ///
    /// `servable.json` stays so the identifier still resolves and cites; the version number is
    /// never reused because its directory stays.
    public func withdraw(owner: String, name: String, version: Int, by login: String, reason: String, now: Date = Date()) throws(DLHubError)
    {
        let dir = versionDirectory(owner: owner, name: name, version: version)
        let tombstone: JSONValue = [
            "by": .string(login), "at": .string(ISO8601DateFormatter().string(from: now)), "reason": .string(reason),
        ]
        let temp = "\(stagingDirectory)/withdrawn-\(UUID().uuidString).json"
        try writeFileSynced(temp, tombstone.encoded(pretty: true))
        guard rename(temp, dir + "/withdrawn.json") == 0 else {
            let e = String(cString: strerror(errno))
            unlink(temp)
            throw DLHubError(.internal, "cannot withdraw \(owner)/\(name)@\(version): \(e)")
        }
        completeWithdrawal(dir)
        fsyncDirectory(dir)
    }

    /// Writes `service.json`, which tells clients where the service listens.
    public func writeServiceFile(_ info: JSONValue) throws(DLHubError) {
        let temp = "\(stagingDirectory)/service-\(UUID().uuidString).json"
        try writeFileSynced(temp, info.encoded(pretty: true), mode: 0o644)
        guard rename(temp, root + "/service.json") == 0 else {
            throw DLHubError(.internal, "cannot write \(root)/service.json: \(String(cString: strerror(errno)))")
        }
    }

    /// Writes a file and syncs it (`DurableFile.write`).
    func writeFileSynced(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws(DLHubError) {
        try DurableFile.write(path, bytes, mode: mode)
    }

    /// Syncs every directory of a tree (the names of what was written), not following links.
    func fsyncTree(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        for item in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
            let child = path + "/" + item
            // attributesOfItem does not follow links.
            if (try? FileManager.default.attributesOfItem(atPath: child))?[.type] as? FileAttributeType == .typeDirectory {
                fsyncTree(child)
            }
        }
        fsync(fd)
    }

    func fsyncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); close(fd) }
    }
}

/// One version in the registry.
public struct RegistryRecord: Sendable, Hashable {
    public var owner: String
    public var name: String
    public var version: Int
    public var metadata: ServableMetadata
    public var directory: String
    public var withdrawal: Withdrawal?
    /// The DOI the site minted for this version (a side record, outside its digest).
    public var siteDOI: String? = nil

    public var digest: String { metadata.identifier ?? "" }
    public var id: String { "\(owner)/\(name)" }
}

/// The tombstone of a withdrawn version.
public struct Withdrawal: Sendable, Hashable {
    public var by: String
    public var at: String
    public var reason: String
}
