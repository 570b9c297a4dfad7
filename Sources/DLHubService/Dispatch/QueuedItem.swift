import DLHubCore
import Foundation

extension Dispatcher {
    /// One accepted input waiting to run.
    public struct QueuedItem: Sendable {
        public var id: UInt64
        public var taskID: String
        /// Who sent it (a login): a batch's stderr goes to the servable's owner only when all its
        /// items are the owner's.
        public var owner: String
        /// The input as JSON bytes, forwarded to the pilot as they are.
        public var payload: [UInt8]
        /// Its output may go to the result cache (a deterministic servable, and the request did
        /// not say `"cache": false`).
        public var cacheable: Bool
        /// When it was queued (monotonic nanoseconds): its queue wait and latency are measured from here.
        public var queuedAt: UInt64

        public init(id: UInt64, taskID: String, owner: String, payload: [UInt8], cacheable: Bool = true) {
            self.id = id
            self.taskID = taskID
            self.owner = owner
            self.payload = payload
            self.cacheable = cacheable
            queuedAt = DispatchTime.now().uptimeNanoseconds
        }
    }

    /// A batch on a pilot: what the service needs to settle it without its queue.
    struct InFlight {
        /// The queue it came from (and goes back to), and what the pilot runs it on.
        var key: String
        var workerKey: String
        var items: [QueuedItem]
        var sentAt: Date
        /// When the batch is taken back if no result came (the worker timeout for the batch and
        /// for each item run alone, plus a margin).
        var deadline: Date
        var digest: String
        var deterministic: Bool
        var servableOwner: String?
        /// `owner/name`: what the latency metrics are labelled with.
        var servable: String
    }
}
