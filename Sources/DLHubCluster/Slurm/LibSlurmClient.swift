import CSlurm
import DLHubCore
import Dispatch
import Foundation
import Glibc
import Logging

/// `SlurmScheduler` over libslurm: submit, load job info, cancel and signal through the C API,
/// never by parsing `sbatch` or `squeue` output.
///
/// libslurm calls block on RPCs to slurmctld, so every call runs on one dedicated dispatch
/// queue, off the Swift concurrency pool. `SLURM_CONF` selects the cluster, as for the commands.
public final class LibSlurmClient: SlurmScheduler {
    private let queue = DispatchQueue(label: "dlhub.libslurm")
    private let logger: Logger

    private static let initialised: Void = { slurm_init(nil) }()

    public init(logger: Logger = Logger(label: "dlhub.slurm")) {
        self.logger = logger
        _ = Self.initialised
    }

    private func run<T: Sendable>(_ body: @escaping @Sendable () throws(DLHubError) -> T) async throws(DLHubError) -> T {
        let result: Result<T, DLHubError> = await withCheckedContinuation { continuation in
            queue.async {
                do throws(DLHubError) { continuation.resume(returning: .success(try body())) } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    static func lastError(_ operation: String) -> DLHubError {
        let code = slurm_get_errno()
        let text = String(cString: slurm_strerror(code))
        return DLHubError(.slurm, "\(operation): \(text) (slurm error \(code))")
    }

    public func submit(_ job: JobSubmission) async throws(DLHubError) -> UInt32 {
        let id = try await run { () throws(DLHubError) -> UInt32 in try Self.submitBlocking(job) }
        logger.info("submitted pilot job", metadata: ["slurm.job_id": "\(id)", "slurm.partition": "\(job.partition ?? "default")"])
        return id
    }

    /// Fills a libslurm job description from `job` for the length of `body`.
    static func withDescription<T>(_ job: JobSubmission, _ body: (inout job_desc_msg_t) -> T) -> T {
        var desc = job_desc_msg_t()
        slurm_init_job_desc_msg(&desc)
        var owned: [UnsafeMutablePointer<CChar>] = []
        defer { owned.forEach { free($0) } }
        func c(_ s: String?) -> UnsafeMutablePointer<CChar>? {
            guard let s else { return nil }
            let p = strdup(s)!
            owned.append(p)
            return p
        }
        desc.name = c(job.name)
        desc.script = c(job.script)
        desc.work_dir = c(job.workDir)
        desc.partition = c(job.partition)
        desc.account = c(job.account)
        desc.qos = c(job.qos)
        desc.features = c(job.constraint)
        if let gres = job.gres { desc.tres_per_node = c(gres.hasPrefix("gres:") ? gres : "gres:\(gres)") }
        desc.comment = c(job.comment)
        desc.std_out = c(job.outputPath)
        desc.std_err = c(job.outputPath)
        desc.min_nodes = UInt32(job.nodes)
        desc.max_nodes = UInt32(job.nodes)
        desc.user_id = getuid()
        desc.group_id = getgid()
        if let cpus = job.cpusPerTask { desc.cpus_per_task = UInt16(cpus) }
        if let mem = job.memoryPerNodeMB { desc.pn_min_memory = UInt64(mem) }
        if let minutes = job.timeLimitMinutes { desc.time_limit = UInt32(minutes) }
        if let begin = job.beginTime { desc.begin_time = time_t(begin) }
        if let requeue = job.requeue { desc.requeue = requeue ? 1 : 0 }
        if let w = job.warningSignal {
            desc.warn_signal = UInt16(w.signal)
            desc.warn_time = UInt16(w.secondsBefore)
        }
        var env = job.environment.map { c($0) }
        env.append(nil)
        desc.env_size = UInt32(job.environment.count)
        return env.withUnsafeMutableBufferPointer { buffer -> T in
            desc.environment = buffer.baseAddress
            return body(&desc)
        }
    }

    static func submitBlocking(_ job: JobSubmission) throws(DLHubError) -> UInt32 {
        var response: UnsafeMutablePointer<submit_response_msg_t>?
        let rc = withDescription(job) { desc in slurm_submit_batch_job(&desc, &response) }
        guard rc == 0, let response else { throw refusal(job, "submitting") }
        defer { slurm_free_submit_response_response_msg(response) }
        return response.pointee.job_id
    }

    /// Slurm's error for a job it refused, in words that name what to fix.
    static func refusal(_ job: JobSubmission, _ doing: String) -> DLHubError {
        var error = lastError("\(doing) job '\(job.name)'")
        if slurm_get_errno() == cslurm_invalid_partition_error() {
            error.message =
                "\(doing) job '\(job.name)': partition '\(job.partition ?? "(default)")' does not exist on this cluster; check the pool's partition (`sinfo` lists them)"
        }
        return error
    }

    /// What Slurm says of a job without submitting it: when and where it would start, or why it
    /// would be refused (the thrown error).
    public func willRun(_ job: JobSubmission) async throws(DLHubError) -> (start: Date, nodes: String) {
        try await run { () throws(DLHubError) -> (start: Date, nodes: String) in
            var response: UnsafeMutablePointer<will_run_response_msg_t>?
            let rc = Self.withDescription(job) { desc in slurm_job_will_run2(&desc, &response) }
            guard rc == 0, let response else { throw Self.refusal(job, "testing") }
            defer { slurm_free_will_run_response_msg(response) }
            let nodes = response.pointee.node_list.map { String(cString: $0) } ?? ""
            return (Date(timeIntervalSince1970: TimeInterval(response.pointee.start_time)), nodes)
        }
    }

    public func job(_ id: UInt32) async throws(DLHubError) -> JobInfo? {
        try await run { () throws(DLHubError) -> JobInfo? in
            var msg: UnsafeMutablePointer<job_info_msg_t>?
            guard slurm_load_job(&msg, id, UInt16(SHOW_ALL)) == 0, let msg else {
                if slurm_get_errno() == cslurm_invalid_job_id_error() { return nil }
                throw Self.lastError("loading job \(id)")
            }
            defer { slurm_free_job_info_msg(msg) }
            guard msg.pointee.record_count > 0, let record = msg.pointee.job_array else { return nil }
            return Self.info(record.pointee)
        }
    }

    /// One RPC for all of them: the jobs of the user the service runs as (its pilot jobs), so
    /// the controller answers once per tick however many pilots there are.
    public func jobs(_ ids: [UInt32]) async throws(DLHubError) -> [UInt32: JobInfo] {
        guard !ids.isEmpty else { return [:] }
        let wanted = Set(ids)
        return try await userJobs { wanted.contains($0) }.reduce(into: [:]) { $0[$1.id] = $1 }
    }

    public func jobsOfThisUser() async throws(DLHubError) -> [JobInfo] {
        try await userJobs { _ in true }
    }

    /// The jobs of the user the service runs as whose ids pass `keep`, in one RPC.
    func userJobs(_ keep: @escaping @Sendable (UInt32) -> Bool) async throws(DLHubError) -> [JobInfo] {
        try await run { () throws(DLHubError) -> [JobInfo] in
            var msg: UnsafeMutablePointer<job_info_msg_t>?
            guard slurm_load_job_user(&msg, getuid(), UInt16(SHOW_ALL)) == 0, let msg else {
                throw Self.lastError("loading the jobs of uid \(getuid())")
            }
            defer { slurm_free_job_info_msg(msg) }
            var out: [JobInfo] = []
            guard let records = msg.pointee.job_array else { return out }
            for i in 0..<Int(msg.pointee.record_count) where keep(records[i].job_id) { out.append(Self.info(records[i])) }
            return out
        }
    }

    static func info(_ j: slurm_job_info_t) -> JobInfo {
        let base = cslurm_job_state_base(j.job_state)
        var state: JobState
        switch job_states(rawValue: base) {
        case JOB_PENDING: state = .pending
        case JOB_RUNNING: state = .running
        case JOB_SUSPENDED: state = .suspended
        case JOB_COMPLETE: state = .completed
        case JOB_CANCELLED: state = .cancelled
        case JOB_FAILED: state = .failed
        case JOB_TIMEOUT: state = .timeout
        case JOB_NODE_FAIL: state = .nodeFail
        case JOB_PREEMPTED: state = .preempted
        case JOB_BOOT_FAIL: state = .bootFail
        case JOB_DEADLINE: state = .deadline
        case JOB_OOM: state = .outOfMemory
        default: state = .failed
        }
        if cslurm_job_is_completing(j.job_state) != 0, !state.isFinished || state == .completed { state = .completing }
        var reason = String(cString: slurm_job_reason_string(job_state_reason(rawValue: UInt32(j.state_reason))))
        if let desc = j.state_desc { reason += ": " + String(cString: desc) }
        func s(_ p: UnsafeMutablePointer<CChar>?) -> String { p.map { String(cString: $0) } ?? "" }
        var info = JobInfo(
            id: j.job_id, name: s(j.name), state: state, reason: reason, nodes: s(j.nodes), partition: s(j.partition),
            submitTime: Int64(j.submit_time), startTime: Int64(j.start_time), endTime: Int64(j.end_time),
            timeLimitMinutes: j.time_limit == cslurm_infinite() || j.time_limit == cslurm_no_val() ? nil : j.time_limit,
            exitCode: Int32(bitPattern: j.exit_code))
        info.comment = s(j.comment)
        return info
    }

    public func cancel(_ id: UInt32) async throws(DLHubError) {
        try await run { () throws(DLHubError) in
            if slurm_kill_job(id, UInt16(SIGKILL), 0) != 0 {
                let e = slurm_get_errno()
                if e == cslurm_already_done_error() || e == cslurm_invalid_job_id_error() { return }
                throw Self.lastError("cancelling job \(id)")
            }
        }
        logger.info("cancelled job", metadata: ["slurm.job_id": "\(id)"])
    }

    public func signal(_ id: UInt32, signal: Int32) async throws(DLHubError) {
        try await run { () throws(DLHubError) in
            if slurm_signal_job(id, UInt16(signal)) != 0 { throw Self.lastError("signalling job \(id)") }
        }
    }
}
