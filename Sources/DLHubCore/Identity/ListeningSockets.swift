import Foundation

/// Who listens on a local TCP port, from the kernel's socket tables (`/proc/net/tcp` and
/// `tcp6`): a client that found the service in the registry's `service.json` checks that the
/// port is held by the registry's owner (the service account) before it sends a credential, so a
/// user who took the port while `dlhubd` was down gets nothing.
public enum ListeningSockets {
    /// The uids of the sockets listening on `port` (any local address), from the tables' text.
    public static func owners(port: Int, tables: [String]) -> Set<UInt32> {
        var uids: Set<UInt32> = []
        for table in tables {
            for line in table.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                // sl local_address rem_address st tx:rx tr:when retrnsmt uid ...
                guard fields.count > 7, fields[3] == "0A" else { continue }
                guard let colon = fields[1].lastIndex(of: ":"), let local = Int(fields[1][fields[1].index(after: colon)...], radix: 16),
                    local == port, let uid = UInt32(fields[7])
                else { continue }
                uids.insert(uid)
            }
        }
        return uids
    }

    /// The uids listening on `port` on this host; nil when the tables cannot be read.
    public static func owners(port: Int) -> Set<UInt32>? {
        let tables = ["/proc/net/tcp", "/proc/net/tcp6"].compactMap { try? String(contentsOfFile: $0, encoding: .utf8) }
        guard !tables.isEmpty else { return nil }
        return owners(port: port, tables: tables)
    }

    /// Whether `host` is this machine's loopback (where the tables tell who listens).
    public static func isLoopback(_ host: String) -> Bool {
        let h = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        return h == "localhost" || h == "::1" || h.hasPrefix("127.")
    }
}
