import DLHubCore
import Foundation

/// The pilot jobs this service submitted and has not seen end, kept in the state directory so
/// that a restarted service can adopt the running ones (their pilots reconnect with the same
/// secret) and cancel the ones still pending.
///
/// The file holds each job's secret: it is written 0600, by rename, into the state directory
/// (0700, the service account's own), and read back only if it is still the service account's
/// own file that nobody else can read.
struct PilotJobTable {
    struct Entry: Equatable {
        var id: UInt32
        var pool: String
        var secret: String
        var submittedAt: Date
        var reason: String
    }

    let path: String

    /// The jobs recorded by the previous run; empty when there is no table. A table that cannot
    /// be trusted or read is set aside (renamed), and the start goes on without it.
    func load() throws(DLHubError) -> [Entry] {
        // Not followed if it is a link (attributes are the link's own).
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { return [] }
        let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue ?? 0o777
        let uid = (attributes[.ownerAccountID] as? NSNumber)?.uint32Value ?? UInt32.max
        guard uid == getuid(), mode & 0o077 == 0, attributes[.type] as? FileAttributeType == .typeRegular else {
            setAside()
            throw DLHubError(
                .internal,
                "the pilot job table \(path) is not the service account's private file (mode \(String(mode & 0o777, radix: 8)), uid \(uid)); it was set aside and its jobs are not adopted"
            )
        }
        guard let data = FileManager.default.contents(atPath: path), let json = try? JSONValue.parse(Array(data)),
            let list = json["jobs"]?.arrayValue
        else {
            setAside()
            throw DLHubError(.internal, "the pilot job table \(path) is unreadable; it was set aside and its jobs are not adopted")
        }
        return list.compactMap { j in
            guard let id = j["job_id"]?.intValue.flatMap({ UInt32(exactly: $0) }), let pool = j["pool"]?.stringValue,
                let secret = j["secret"]?.stringValue, PilotProof.isWellFormed(secret)
            else { return nil }
            return Entry(
                id: id, pool: pool, secret: secret,
                submittedAt: Date(timeIntervalSince1970: j["submitted"]?.doubleValue ?? Date().timeIntervalSince1970),
                reason: j["why"]?.stringValue ?? "")
        }
    }

    /// Replaces the table with `entries` (a private file, synced, renamed over the old one).
    func save(_ entries: [Entry]) throws(DLHubError) {
        let json: JSONValue = [
            "jobs": .array(
                entries.sorted { $0.id < $1.id }.map {
                    [
                        "job_id": .int(Int64($0.id)), "pool": .string($0.pool), "secret": .string($0.secret),
                        "submitted": .double($0.submittedAt.timeIntervalSince1970), "why": .string($0.reason),
                    ]
                })
        ]
        try DurableFile.replace(path, json.encoded(pretty: true), mode: 0o600)
    }

    func setAside() {
        _ = rename(path, path + ".untrusted-\(Int(Date().timeIntervalSince1970))")
    }
}
