/// The seam between the service and Slurm: submit, inspect, cancel and signal batch jobs.
///
/// `LibSlurmClient` (DLHubCluster) is the real implementation over libslurm; tests of the
/// pilot manager's policy use a double from DLHubTesting.
public protocol SlurmScheduler: Sendable {
    func submit(_ job: JobSubmission) async throws(DLHubError) -> UInt32
    /// The job's state, or nil when the controller no longer knows the job.
    func job(_ id: UInt32) async throws(DLHubError) -> JobInfo?
    /// The states of several jobs at once; a job the controller no longer knows is absent.
    func jobs(_ ids: [UInt32]) async throws(DLHubError) -> [UInt32: JobInfo]
    func cancel(_ id: UInt32) async throws(DLHubError)
    func signal(_ id: UInt32, signal: Int32) async throws(DLHubError)
    /// Every job of the user this process runs as (what a restarted service looks through for
    /// pilot jobs it no longer tracks).
    func jobsOfThisUser() async throws(DLHubError) -> [JobInfo]
}

extension SlurmScheduler {
    /// One `job(_:)` per id (a scheduler that can do better does it in one call).
    public func jobs(_ ids: [UInt32]) async throws(DLHubError) -> [UInt32: JobInfo] {
        var out: [UInt32: JobInfo] = [:]
        for id in ids { if let info = try await job(id) { out[id] = info } }
        return out
    }

    /// None known (a scheduler that can list a user's jobs does).
    public func jobsOfThisUser() async throws(DLHubError) -> [JobInfo] { [] }
}

/// What to submit: a batch script and the options `sbatch` would take.
public struct JobSubmission: Sendable, Hashable {
    public var name: String
    public var script: String
    public var workDir: String
    public var partition: String?
    public var account: String?
    public var qos: String?
    public var constraint: String?
    public var gres: String?
    public var nodes: Int = 1
    public var cpusPerTask: Int?
    public var memoryPerNodeMB: Int?
    public var timeLimitMinutes: Int?
    /// Unix time before which the job may not start (`--begin`).
    public var beginTime: Int64?
    public var outputPath: String?
    /// `--requeue` / `--no-requeue`; nil leaves the cluster's default.
    public var requeue: Bool?
    /// `--comment`: dlhubd marks its pilot jobs with its service id.
    public var comment: String?
    /// `NAME=value` strings; Slurm requires an environment for batch jobs.
    public var environment: [String] = []
    /// `--signal=SIG@SECONDS`: a warning sent to the job's steps before its end time.
    public var warningSignal: (signal: Int32, secondsBefore: Int)? {
        get { warning.map { ($0.signal, $0.seconds) } }
        set { warning = newValue.map { Warning(signal: $0.signal, seconds: $0.secondsBefore) } }
    }
    var warning: Warning?
    struct Warning: Sendable, Hashable {
        var signal: Int32
        var seconds: Int
    }

    public init(name: String, script: String, workDir: String) {
        self.name = name
        self.script = script
        self.workDir = workDir
    }
}

/// A job's state as the controller reports it.
public struct JobInfo: Sendable, Hashable {
    public var id: UInt32
    public var name: String
    public var state: JobState
    /// Why a job is pending or why it failed (`Resources`, `Priority`, `BeginTime`, ...).
    public var reason: String
    public var nodes: String
    public var partition: String
    public var submitTime: Int64
    public var startTime: Int64
    /// The actual end, or for a running job the end its time limit sets.
    public var endTime: Int64
    public var timeLimitMinutes: UInt32?
    public var exitCode: Int32
    public var comment: String = ""

    public init(
        id: UInt32, name: String, state: JobState, reason: String, nodes: String, partition: String,
        submitTime: Int64, startTime: Int64, endTime: Int64, timeLimitMinutes: UInt32?, exitCode: Int32
    ) {
        self.id = id
        self.name = name
        self.state = state
        self.reason = reason
        self.nodes = nodes
        self.partition = partition
        self.submitTime = submitTime
        self.startTime = startTime
        self.endTime = endTime
        self.timeLimitMinutes = timeLimitMinutes
        self.exitCode = exitCode
    }
}

/// Slurm's job states, with COMPLETING as its own state.
public enum JobState: String, Sendable, Hashable, CaseIterable {
    case pending = "PENDING"
    case running = "RUNNING"
    case suspended = "SUSPENDED"
    case completing = "COMPLETING"
    case completed = "COMPLETED"
    case cancelled = "CANCELLED"
    case failed = "FAILED"
    case timeout = "TIMEOUT"
    case nodeFail = "NODE_FAIL"
    case preempted = "PREEMPTED"
    case bootFail = "BOOT_FAIL"
    case deadline = "DEADLINE"
    case outOfMemory = "OUT_OF_MEMORY"

    /// Whether the job has ended for good.
    public var isFinished: Bool {
        switch self {
        case .pending, .running, .suspended, .completing: return false
        default: return true
        }
    }
}
