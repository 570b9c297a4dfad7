import Foundation

/// How much each servable version has been used since the service started: requests answered by
/// a pilot, their median latency (accepted to answered) and when the last one was. The web
/// catalogue shows it on public servables' pages.
///
/// Bounded: the latest `samples` latencies per version, `versions` versions (the least recently
/// used is forgotten first). Shared without an actor hop: the dispatcher records, pages read.
public final class ServableUsage: Sendable {
    public struct Summary: Sendable, Equatable {
        public var served: Int
        public var medianSeconds: Double
        public var lastUsed: Date
    }

    struct Entry {
        var served = 0
        var latencies: [Double] = []
        var next = 0
        var lastUsed = Date.distantPast
    }

    let samples: Int
    let versions: Int
    private let table = LockedBox<[String: Entry]>([:])

    public init(samples: Int = 1024, versions: Int = 10_000) {
        self.samples = max(1, samples)
        self.versions = max(1, versions)
    }

    /// `latencies` in seconds, one per input answered now for the version `digest`.
    public func record(digest: String, latencies: [Double], at now: Date = Date()) {
        guard !latencies.isEmpty else { return }
        let samples = self.samples
        let versions = self.versions
        table.update { table in
            if table[digest] == nil, table.count >= versions,
                let oldest = table.min(by: { $0.value.lastUsed < $1.value.lastUsed })?.key
            {
                table.removeValue(forKey: oldest)
            }
            var e = table[digest] ?? Entry()
            e.served += latencies.count
            for l in latencies {
                if e.latencies.count < samples {
                    e.latencies.append(l)
                } else {
                    e.latencies[e.next] = l
                }
                e.next = (e.next + 1) % samples
            }
            e.lastUsed = now
            table[digest] = e
        }
    }

    public func summary(digest: String) -> Summary? {
        guard let e = table.update({ $0[digest] }), e.served > 0 else { return nil }
        let sorted = e.latencies.sorted()
        let n = sorted.count
        let median = n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
        return Summary(served: e.served, medianSeconds: median, lastUsed: e.lastUsed)
    }
}
