import DLHubCore
import Foundation

/// A `SlurmScheduler` double for unit tests of the pilot manager's policy and of code that needs
/// a scheduler but no cluster. It records submissions and lets a test set job states. The real
/// path (libslurm against the local cluster) is what the cluster and end-to-end tests use.
public final class FakeSlurm: SlurmScheduler, @unchecked Sendable {
    private let lock = NSLock()
    private var nextID: UInt32 = 1000
    public private(set) var submitted: [JobSubmission] = []
    public var jobs: [UInt32: JobInfo] = [:]
    public var failSubmissions: DLHubError?
    public private(set) var failedAttempts = 0
    public private(set) var submittedIDs: [UInt32] = []
    public private(set) var cancelled: [UInt32] = []

    public init() {}

    public func submit(_ job: JobSubmission) async throws(DLHubError) -> UInt32 {
        try submitLocked(job)
    }

    private func submitLocked(_ job: JobSubmission) throws(DLHubError) -> UInt32 {
        lock.lock()
        defer { lock.unlock() }
        if let failSubmissions {
            failedAttempts += 1
            throw failSubmissions
        }
        nextID += 1
        submitted.append(job)
        submittedIDs.append(nextID)
        jobs[nextID] = JobInfo(
            id: nextID, name: job.name, state: .pending, reason: "Priority", nodes: "", partition: job.partition ?? "cpu",
            submitTime: Int64(Date().timeIntervalSince1970), startTime: 0, endTime: 0,
            timeLimitMinutes: job.timeLimitMinutes.map(UInt32.init), exitCode: 0)
        jobs[nextID]?.comment = job.comment ?? ""
        return nextID
    }

    public func job(_ id: UInt32) async throws(DLHubError) -> JobInfo? { info(id) }

    public func info(_ id: UInt32) -> JobInfo? {
        lock.lock()
        defer { lock.unlock() }
        return jobs[id]
    }

    /// Seconds each cancel takes (a controller that does not answer).
    public var cancelDelaySeconds = 0.0

    public func cancel(_ id: UInt32) async throws(DLHubError) {
        if cancelDelaySeconds > 0 { try? await Task.sleep(for: .seconds(cancelDelaySeconds)) }
        set(id, state: .cancelled)
        lock.withLock { cancelled.append(id) }
    }

    public func signal(_ id: UInt32, signal: Int32) async throws(DLHubError) {}

    public func jobsOfThisUser() async throws(DLHubError) -> [JobInfo] {
        lock.withLock { Array(jobs.values) }
    }

    /// Sets a job's state, e.g. to running with an end time.
    public func set(_ id: UInt32, state: JobState, endTime: Int64 = 0) {
        lock.lock()
        defer { lock.unlock() }
        jobs[id]?.state = state
        jobs[id]?.endTime = endTime
    }

    /// Removes a job as if the controller no longer knew it.
    public func forget(_ id: UInt32) {
        lock.lock()
        defer { lock.unlock() }
        jobs.removeValue(forKey: id)
    }

    public var submissionCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return submitted.count
    }
}
