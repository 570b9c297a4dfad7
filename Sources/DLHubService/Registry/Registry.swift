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
        return RegistryRecord(owner: owner, name: name, version: version, metadata: metadata, directory: dir, withdrawal: withdrawal)
    }

    /// Every version of every servable, for rebuilding the search index.
    public func allRecords(logger: Logger) -> [RegistryRecord] {
        let fm = FileManager.default
        var out: [RegistryRecord] = []
        for owner in (try? fm.contentsOfDirectory(atPath: servablesDirectory)) ?? [] {
            for name in (try? fm.contentsOfDirectory(atPath: "\(servablesDirectory)/\(owner)")) ?? [] {
                for version in versions(owner: owner, name: name) {
                    do throws(DLHubError) {
                        if let r = try record(owner: owner, name: name, version: version) { out.append(r) }
                    } catch {
                        logger.warning(
                            "skipping an unreadable registry entry",
                            metadata: ["servable": "\(owner)/\(name)@\(version)", "error": "\(error)"])
                    }
                }
            }
        }
        return out
    }

    /// Publishes an uploaded servable directory as the next version of `owner/<dlhub.name>`.
    ///
    /// Validation happens before anything is written; the write goes to `.staging/` and becomes
    /// visible by an atomic rename. Returns the new record.
    public func publish(entries: [TarEntry], owner: String, now: Date = Date()) throws(DLHubError) -> RegistryRecord {
        guard let metaEntry = entries.first(where: { $0.path == "servable.json" }), case .file = metaEntry.kind else {
            throw DLHubError(
                .invalidMetadata, "the upload has no servable.json at its top level; run `dlhub init` in the servable directory to make one"
            )
        }
        let doc: JSONValue
        do { doc = try JSONValue.parse(metaEntry.contents) } catch {
            throw DLHubError(.invalidMetadata, "servable.json is not valid JSON: \(error)")
        }
        let available = Set(
            entries.compactMap { e -> String? in
                if case .directory = e.kind { return nil }
                return e.path
            })
        let metadata = try ServableMetadata.validate(doc, files: available)
        if let declared = doc["dlhub"]?["owner"]?.stringValue, declared != owner {
            throw DLHubError(
                .forbidden,
                "servable.json names owner '\(declared)' but you are '\(owner)'; only \(declared) can publish \(declared)/\(metadata.name)")
        }

        let fm = FileManager.default
        let staging = "\(stagingDirectory)/\(UUID().uuidString)"
        var published = false
        defer { if !published { try? fm.removeItem(atPath: staging) } }

        var manifest: [ContentDigest.ManifestEntry] = []
        do {
            try fm.createDirectory(atPath: staging, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            for entry in entries where entry.path != "servable.json" {
                let target = "\(staging)/\(entry.path)"
                let parent = (target as NSString).deletingLastPathComponent
                try fm.createDirectory(atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
                switch entry.kind {
                case .directory:
                    try fm.createDirectory(atPath: target, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
                case .symlink(let linkTarget):
                    try fm.createSymbolicLink(atPath: target, withDestinationPath: linkTarget)
                case .file:
                    // Only the executable bit survives: no setuid, no world-writable files.
                    let mode: Int = entry.mode & 0o111 != 0 ? 0o755 : 0o644
                    guard fm.createFile(atPath: target, contents: Data(entry.contents), attributes: [.posixPermissions: mode]) else {
                        throw DLHubError(
                            .invalidArchive, "cannot write '\(entry.path)' from the upload (does a file and a directory share that name?)")
                    }
                    manifest.append(.init(path: entry.path, size: entry.contents.count, sha256: ContentDigest.sha256Hex(entry.contents)))
                }
            }
        } catch let error as DLHubError {
            throw error
        } catch {
            throw DLHubError(.invalidArchive, "cannot unpack the upload: \(error.localizedDescription)", cause: error)
        }

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
            if rename(staging, target) == 0 {
                published = true
                fsyncDirectory(nameDir)
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
        let fm = FileManager.default
        for item in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] where item != "servable.json" && item != "withdrawn.json" {
            try? fm.removeItem(atPath: "\(dir)/\(item)")
        }
    }

    /// Writes `service.json`, which tells clients where the service listens.
    public func writeServiceFile(_ info: JSONValue) throws(DLHubError) {
        let temp = "\(stagingDirectory)/service-\(UUID().uuidString).json"
        try writeFileSynced(temp, info.encoded(pretty: true), mode: 0o644)
        guard rename(temp, root + "/service.json") == 0 else {
            throw DLHubError(.internal, "cannot write \(root)/service.json: \(String(cString: strerror(errno)))")
        }
    }

    func writeFileSynced(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws(DLHubError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw DLHubError(.internal, "cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw DLHubError(.internal, "cannot write \(path): \(String(cString: strerror(errno)))") }
            offset += n
        }
        fsync(fd)
        fchmod(fd, mode)
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

    public var digest: String { metadata.identifier ?? "" }
    public var id: String { "\(owner)/\(name)" }
}

/// The tombstone of a withdrawn version.
public struct Withdrawal: Sendable, Hashable {
    public var by: String
    public var at: String
    public var reason: String
}
