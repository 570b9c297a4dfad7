import DLHubCluster
import DLHubCore
import Foundation
import Glibc

/// One worker: a process that loaded one servable and answers JSON-line batches on
/// stdin/stdout (docs/worker-protocol.md). All calls block; the pilot runs them on a dedicated
/// queue per worker, never on the concurrency pool.
final class WorkerProcess: @unchecked Sendable {
    /// Started with explicit file actions: it holds descriptors 0, 1 and 2 and nothing else.
    private var process: ChildProcess!
    private var buffer: [UInt8] = []
    private let stderrLog = StderrLog()
    let queue: DispatchQueue
    let scratch: String
    /// Names the worker's GPUs in the pilot's `GPUAssignment`.
    let id: String
    /// GPUs the worker is pinned to (given back when it stops).
    let gpus: [String]
    /// What the worker wrote to stderr while loading (before it said ready); it had seen no input.
    private(set) var loadLog = ""
    var lastUsed = Date()

    enum Failure: Error, CustomStringConvertible {
        case exited(status: Int32, stderr: String)
        case timedOut(seconds: Double)
        case protocolError(String)
        /// The worker could not load its servable; `stderr` is what it wrote meanwhile.
        case notReady(String, stderr: String)
        /// The pilot stopped it: it ran `processes` processes, more than `limit` (see `ProcessWatch`).
        case tooManyProcesses(processes: Int, limit: Int)
        /// It had ended before the request reached it (killed while idle): the request never ran.
        case goneBeforeRequest(status: Int32)

        var description: String {
            switch self {
            case .exited(let status, let stderr):
                return "the worker crashed (exit status \(status))" + (stderr.isEmpty ? "" : "; its last words: \(stderr)")
            case .timedOut(let s): return "the worker did not answer within the servable's timeout of \(Self.format(s)) s and was killed"
            case .protocolError(let m): return m
            case .notReady(let m, _): return m
            case .goneBeforeRequest(let status): return "the worker had ended (exit status \(status)) before the request reached it"
            case .tooManyProcesses(let n, let limit):
                return
                    "the worker ran \(n) processes and threads at once, more than the \(limit) processes and threads a worker may run on this pilot (worker_max_processes), and was stopped"
            }
        }

        static func format(_ s: Double) -> String { s == s.rounded() ? String(Int(s)) : String(s) }
    }

    /// Starts the worker and waits for its `ready` line.
    /// What Slurm sends every process of the job: the walltime warning (`--signal`) and scancel's
    /// SIGTERM are for the pilot, which drains and then stops its workers itself (with SIGKILL).
    static let slurmSignals: [Int32] = [SIGUSR1, SIGTERM, SIGINT]

    /// A reply line longer than this is refused and the worker stopped (its outputs could not be sent anyway).
    let maxLineBytes: Int
    /// Processes the worker may run at once.
    let maxProcesses: Int
    /// Set (from the watch's thread) when `ProcessWatch` stopped the worker: how many it ran.
    private let overLimit = Locked<Int?>(nil)
    /// Bytes of stderr still to be copied to the pilot's own stderr (its log; see `readStderr`).
    private var pilotLogBudget: Int

    /// What of one worker's stderr reaches the pilot's log on the shared filesystem, at most; the
    /// owner's logs keep the last 16 KiB of each batch's (`StderrLog`).
    static let pilotLogBytes = 256 * 1024

    /// Names the worker's lines in the pilot's log.
    let label: String

    init(
        launch: WorkerLauncher.Launch, id: String, gpus: [String], startTimeout: Double, maxLineBytes: Int, maxProcesses: Int,
        copyingStderr copied: Int = WorkerProcess.pilotLogBytes, label: String
    ) throws {
        self.label = String(label.replacingOccurrences(of: "sha256:", with: "").prefix(12))
        self.maxLineBytes = maxLineBytes
        pilotLogBudget = copied
        self.maxProcesses = maxProcesses
        queue = DispatchQueue(label: "dlhub.worker.\(label)")
        scratch = launch.scratch
        self.id = id
        self.gpus = gpus
        // From the spawn thread: the sandbox dies with the thread that started it (see SpawnThread).
        do {
            process = try SpawnThread.shared.sync {
                try ChildProcess(
                    executable: launch.command[0], arguments: Array(launch.command.dropFirst()), environment: launch.environment,
                    directory: launch.directory, keepingIgnored: Self.slurmSignals)
            }
        } catch {
            try? FileManager.default.removeItem(atPath: scratch)
            throw Failure.protocolError("cannot start the worker (\(launch.command[0])): \(error)")
        }
        let child = process!
        let overLimit = self.overLimit
        ProcessWatch.shared.watch(child.pid, limit: maxProcesses) { processes in
            overLimit.set(processes)
            child.send(SIGKILL)
        }
        // Stderr is read in the same loop as stdout: whatever a worker wrote there before its
        // reply is in hand when the reply is, so it is charged to the right batch.
        let errFD = process.stderr
        _ = fcntl(errFD, F_SETFL, fcntl(errFD, F_GETFL) | O_NONBLOCK)
        let line: [UInt8]
        do { line = try readLine(timeout: startTimeout) } catch {
            stop()
            throw error
        }
        loadLog = stderrLog.take()
        guard let json = try? JSONValue.parse(line) else {
            stop()
            throw Failure.protocolError("the worker broke the protocol: its first line was not JSON")
        }
        guard json["ready"]?.boolValue == true else {
            drainStderr(until: Date().addingTimeInterval(0.5))
            loadLog += stderrLog.take()
            stop()
            throw Failure.notReady(json["error"]?.stringValue ?? "the worker did not say it was ready", stderr: loadLog)
        }
    }

    /// Sends one request line and returns the reply line, with what the worker wrote to stderr
    /// meanwhile (which belongs to this request's inputs only).
    func exchange(_ request: [UInt8], timeout: Double) throws -> (reply: [UInt8], log: String) {
        lastUsed = Date()
        _ = stderrLog.take()
        var line = request
        line.append(0x0A)
        let fd = process.stdin
        // Ended while idle (killed, or it exited): the request never reached it, and may be run
        // on a fresh worker (found by the soak: an input sent to a worker killed a moment before
        // failed as if it had crashed it).
        if !process.isRunning, overLimit.get() == nil {
            let failure = exitFailure()
            if case .exited(let status, _) = failure { throw Failure.goneBeforeRequest(status: status) }
            throw failure
        }
        var offset = 0
        while offset < line.count {
            let n = line[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n <= 0 {
                let failure = exitFailure()
                if offset == 0, case .exited(let status, _) = failure { throw Failure.goneBeforeRequest(status: status) }
                throw failure
            }
            offset += n
        }
        let reply = try readLine(timeout: timeout)
        return (reply, stderrLog.take())
    }

    /// Read buffer for both pipes (reused: a worker's replies are read on its own queue, one at a time).
    private var chunk = [UInt8](repeating: 0, count: 65536)

    private func readLine(timeout: Double) throws -> [UInt8] {
        let deadline = Date().addingTimeInterval(timeout)
        let outFD = process.stdout
        let errFD = process.stderr
        var errOpen = true
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                // Everything written to stderr before the reply is already in the pipe.
                if errOpen { _ = readStderr(errFD) }
                return line
            }
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 {
                stop()
                throw Failure.timedOut(seconds: timeout)
            }
            var fds = [
                pollfd(fd: outFD, events: Int16(POLLIN), revents: 0), pollfd(fd: errOpen ? errFD : -1, events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&fds, 2, Int32(min(remaining, 1.0) * 1000) + 1)
            if ready < 0, errno == EINTR { continue }
            if ready <= 0 { continue }
            if errOpen, fds[1].revents != 0 { errOpen = readStderr(errFD) }
            guard fds[0].revents != 0 else { continue }
            let n = read(outFD, &chunk, chunk.count)
            // Closed stdout: the worker died, or closed it and lingers; either way it is done.
            if n <= 0 { throw exitFailure() }
            buffer += chunk[..<n]
            if buffer.count > maxLineBytes, !buffer.contains(0x0A) {
                stop()
                throw Failure.protocolError(
                    "the worker's answer is larger than \(maxLineBytes) bytes, more than a pilot may send the service; return less")
            }
        }
    }

    /// Reads what is waiting on stderr without blocking, at most 1 MiB a call (a worker that
    /// writes without end must not keep its reader from its deadline); false once it is closed.
    private func readStderr(_ fd: Int32) -> Bool {
        for _ in 0..<16 {
            let n = read(fd, &chunk, chunk.count)
            if n > 0 {
                let data = Data(chunk[..<n])
                copyToPilotLog(data)
                stderrLog.append(data)
                continue
            }
            return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        }
        return true
    }

    /// Whether the next byte copied to the pilot's log starts a line (and gets the prefix).
    private var atLineStart = true

    /// Copies stderr to the pilot's own (its log on the shared filesystem) within this worker's
    /// budget and the pilot's: each line marked as the worker's, control characters (terminal
    /// escapes) replaced, so that a worker cannot write lines that pass for the pilot's.
    private func copyToPilotLog(_ data: Data) {
        guard pilotLogBudget > 0 else { return }
        let allowed = PilotLogBudget.shared.take(min(data.count, pilotLogBudget))
        guard allowed > 0 else {
            pilotLogBudget = 0
            FileHandle.standardError.write(
                Data("[worker \(label)] (the pilot's log holds all the workers' stderr it may; no more is copied)\n".utf8))
            return
        }
        pilotLogBudget -= allowed
        var out: [UInt8] = []
        out.reserveCapacity(allowed + 64)
        let prefix = Array("[worker \(label)] ".utf8)
        for byte in data.prefix(allowed) {
            if atLineStart {
                out += prefix
                atLineStart = false
            }
            switch byte {
            case 0x0A:
                out.append(byte)
                atLineStart = true
            case 0x09: out.append(byte)
            case 0..<0x20, 0x7F: out.append(UInt8(ascii: "?"))
            default: out.append(byte)
            }
        }
        // Whole lines only: the pilot's workers write to its log side by side, and a line left
        // open would run into another worker's (found in CI: a forged line without the prefix).
        if !atLineStart {
            out.append(0x0A)
            atLineStart = true
        }
        if pilotLogBudget == 0 {
            out += Array(
                "[worker \(label)] wrote more than \(Self.pilotLogBytes / 1024) KiB to stderr; the rest is not copied here (its owner sees the last 16 KiB of each batch in `dlhub logs`)\n"
                    .utf8)
        }
        FileHandle.standardError.write(Data(out))
    }

    /// Collects the last of stderr after the worker ended (or for `until`).
    private func drainStderr(until deadline: Date) {
        let fd = process.stderr
        while deadline.timeIntervalSinceNow > 0 {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, Int32(deadline.timeIntervalSinceNow * 1000) + 1) > 0 else { return }
            if !readStderr(fd) { return }
        }
    }

    private func exitFailure() -> Failure {
        if process.isRunning {
            // It closed its pipes but lives on: it will never answer again.
            usleep(100_000)
            if process.isRunning { process.send(SIGKILL) }
        }
        let status = process.wait()
        drainStderr(until: Date().addingTimeInterval(0.2))
        cleanUp()
        if let processes = overLimit.get() { return .tooManyProcesses(processes: processes, limit: maxProcesses) }
        return .exited(status: status, stderr: stderrLog.lastLines())
    }

    var isRunning: Bool { process.isRunning }

    func stop() {
        if process.isRunning {
            process.send(SIGKILL)
            process.wait()
        }
        process.closeStdin()
        cleanUp()
    }

    private func cleanUp() {
        ProcessWatch.shared.forget(process.pid)
        try? FileManager.default.removeItem(atPath: scratch)
    }
}

/// What a worker wrote to stderr since it was last taken, bounded to the last 16 KiB.
/// What of all its workers' stderr a pilot copies to its log, at most (a batch split after a
/// crash runs each input on a fresh worker, so a per-worker bound alone let one request of 52
/// crashing inputs copy 13 MB: found by the red team).
final class PilotLogBudget: @unchecked Sendable {
    static let shared = PilotLogBudget(bytes: 4 << 20)
    private var left: Int
    private let lock = NSLock()
    init(bytes: Int) { left = bytes }

    /// Up to `wanted` bytes of the budget; what is granted.
    func take(_ wanted: Int) -> Int {
        lock.lock()
        defer { lock.unlock() }
        let granted = min(max(0, wanted), left)
        left -= granted
        return granted
    }
}

final class StderrLog: @unchecked Sendable {
    private var bytes = Data()
    private let lock = NSLock()
    static let limit = 16 * 1024

    /// Keeps the last `limit` bytes. A fresh copy when trimming: `suffix` of a `Data` shares its
    /// storage, so trimming in place kept every byte a worker wrote during a batch (found by the
    /// red team: 800 MB of stderr in one call took the pilot to 842 MB).
    func append(_ data: Data) {
        lock.lock()
        if data.count >= Self.limit {
            bytes = Data(data.suffix(Self.limit))
        } else {
            bytes.append(data)
            if bytes.count > 2 * Self.limit { bytes = Data(bytes.suffix(Self.limit)) }
        }
        lock.unlock()
    }

    /// Everything since the last take (its last `limit` bytes), and starts afresh.
    func take() -> String {
        lock.lock()
        defer { lock.unlock() }
        let text = String(decoding: bytes.suffix(Self.limit), as: UTF8.self)
        bytes = Data()
        return text
    }

    /// The last three lines since the last take, for a crash message.
    func lastLines() -> String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: bytes.suffix(600), as: UTF8.self).split(separator: "\n").suffix(3).joined(separator: " | ")
    }
}
