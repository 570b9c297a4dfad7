import DLHubCore
import Foundation
import Glibc

/// One worker: a process that loaded one servable and answers JSON-line batches on
/// stdin/stdout (docs/worker-protocol.md). All calls block; the pilot runs them on a dedicated
/// queue per worker, never on the concurrency pool.
final class WorkerProcess: @unchecked Sendable {
    let process = Process()
    let stdinPipe = Pipe()
    let stdoutPipe = Pipe()
    let stderrPipe = Pipe()
    private var buffer: [UInt8] = []
    private let stderrTail = StderrTail()
    let queue: DispatchQueue
    var lastUsed = Date()

    enum Failure: Error, CustomStringConvertible {
        case exited(status: Int32, stderr: String)
        case timedOut(seconds: Double)
        case protocolError(String)

        var description: String {
            switch self {
            case .exited(let status, let stderr):
                return "the worker crashed (exit status \(status))" + (stderr.isEmpty ? "" : "; its last words: \(stderr)")
            case .timedOut(let s): return "the worker did not answer within the servable's timeout of \(Self.format(s)) s and was killed"
            case .protocolError(let m): return "the worker broke the protocol: \(m)"
            }
        }

        static func format(_ s: Double) -> String { s == s.rounded() ? String(Int(s)) : String(s) }
    }

    /// Starts the worker and waits for its `ready` line.
    init(command: [String], directory: String, environment: [String: String], startTimeout: Double, label: String) throws {
        queue = DispatchQueue(label: "dlhub.worker.\(label)")
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.environment = environment
        process.standardInput = stdinPipe
        process.standardOutput = stdoutPipe
        process.standardError = stderrPipe
        do { try process.run() } catch {
            throw Failure.protocolError("cannot start \(command[0]): \(error.localizedDescription)")
        }
        let tail = stderrTail
        let errHandle = stderrPipe.fileHandleForReading
        Thread.detachNewThread {
            while true {
                let data = errHandle.availableData
                if data.isEmpty { break }
                FileHandle.standardError.write(data)
                tail.append(data)
            }
        }
        let line = try readLine(timeout: startTimeout)
        guard let json = try? JSONValue.parse(line) else { throw Failure.protocolError("the first line was not JSON") }
        guard json["ready"]?.boolValue == true else {
            stop()
            throw Failure.protocolError(json["error"]?.stringValue ?? "the worker did not say it was ready")
        }
    }

    /// Sends one request line and returns the reply line.
    func exchange(_ request: [UInt8], timeout: Double) throws -> [UInt8] {
        lastUsed = Date()
        var line = request
        line.append(0x0A)
        let fd = stdinPipe.fileHandleForWriting.fileDescriptor
        var offset = 0
        while offset < line.count {
            let n = line[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n <= 0 { throw exitFailure() }
            offset += n
        }
        return try readLine(timeout: timeout)
    }

    private func readLine(timeout: Double) throws -> [UInt8] {
        let deadline = Date().addingTimeInterval(timeout)
        let fd = stdoutPipe.fileHandleForReading.fileDescriptor
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                return line
            }
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 {
                stop()
                throw Failure.timedOut(seconds: timeout)
            }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, Int32(min(remaining, 1.0) * 1000) + 1)
            if ready < 0, errno == EINTR { continue }
            if ready <= 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { throw exitFailure() }
            buffer += chunk[..<n]
        }
    }

    private func exitFailure() -> Failure {
        process.waitUntilExit()
        usleep(50_000)  // let the stderr reader catch the last lines
        return .exited(status: process.terminationStatus, stderr: stderrTail.text)
    }

    var isRunning: Bool { process.isRunning }

    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? stdinPipe.fileHandleForWriting.close()
    }
}

/// The last few hundred bytes a worker wrote to stderr, for error messages.
final class StderrTail: @unchecked Sendable {
    private var bytes = Data()
    private let lock = NSLock()

    func append(_ data: Data) {
        lock.lock()
        bytes.append(data)
        if bytes.count > 600 { bytes = bytes.suffix(600) }
        lock.unlock()
    }

    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").suffix(3).joined(separator: " | ")
    }
}
