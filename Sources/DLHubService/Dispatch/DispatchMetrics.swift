import DLHubCore
import Metrics

/// The dispatcher's counters and per-servable histograms. The `servable` label of the
/// histograms, which `/metrics` shows to anyone, is a public servable's `owner/name`; any
/// other's is named by a prefix of its digest, so that a private servable's name does not reach
/// people it is not shared with (its owner finds the digest in `describe`).
struct DispatchMetrics {
    let itemsDispatched = Counter(label: "dlhub_items_dispatched_total")
    let batchesDispatched = Counter(label: "dlhub_batches_dispatched_total")
    let itemsRequeued = Counter(label: "dlhub_items_requeued_total")
    /// Items a pilot handed back unstarted because their servable had just been evicted there.
    let itemsReturned = Counter(label: "dlhub_items_returned_total")
    let itemsRefused = Counter(label: "dlhub_items_refused_over_quota_total")
    let batchesTakenBack = Counter(label: "dlhub_batches_taken_back_total")
    let queued = Gauge(label: "dlhub_items_queued")
    let batchSizes = Recorder(label: "dlhub_batch_size")

    /// Queue wait (accepted to sent to a pilot) and latency (accepted to answered by a pilot), in seconds.
    struct PerServable {
        var queueWait: Metrics.Timer
        var latency: Metrics.Timer
    }

    /// Distinct servable labels kept at most (then the table starts again).
    static let maxServables = 10_000
    private var servables: [String: PerServable] = [:]

    mutating func servable(_ label: String) -> PerServable {
        if let known = servables[label] { return known }
        if servables.count > Self.maxServables { servables.removeAll() }
        let made = PerServable(
            queueWait: Metrics.Timer(label: "dlhub_queue_wait_seconds", dimensions: [("servable", label)]),
            latency: Metrics.Timer(label: "dlhub_request_seconds", dimensions: [("servable", label)]))
        servables[label] = made
        return made
    }

    static func servableLabel(_ metadata: ServableMetadata, digest: String) -> String {
        guard metadata.visibleTo.contains(.everyone) else { return "private:" + digest.prefix(12) }
        return "\(metadata.owner ?? "")/\(metadata.name)"
    }
}
