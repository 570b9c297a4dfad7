import DLHubCore
import Foundation

/// Runs a helper program to completion (an installer, an interpreter asked its version) and
/// collects what it printed. Blocking: call it through `BlockingIO`.
enum ProcessRunner {
    struct Result: Sendable {
        var status: Int32
        /// Standard output and standard error together, in the order they came (bounded).
        var output: String
        var timedOut: Bool
    }

    static let outputLimit = 64 * 1024

    static func run(
        _ executable: String, _ arguments: [String], environment: [String: String], timeout: Double
    ) throws(DLHubError) -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do { try process.run() } catch {
            throw DLHubError(.internal, "cannot run \(executable): \(error.localizedDescription)", cause: error)
        }
        let reader = pipe.fileHandleForReading
        let collected = OutputBuffer()
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            while true {
                let data = reader.availableData
                if data.isEmpty { break }
                collected.append(data)
            }
            done.signal()
        }
        var timedOut = false
        if done.wait(timeout: .now() + timeout) == .timedOut {
            timedOut = true
            kill(process.processIdentifier, SIGKILL)
            done.wait()
        }
        process.waitUntilExit()
        return Result(status: process.terminationStatus, output: collected.text, timedOut: timedOut)
    }

    /// `uv` -> `/usr/bin/uv`, searching `PATH`; nil when absent.
    static func which(_ program: String, path: String? = ProcessInfo.processInfo.environment["PATH"]) -> String? {
        if program.contains("/") { return FileManager.default.isExecutableFile(atPath: program) ? program : nil }
        for dir in (path ?? "/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(dir)/\(program)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}

/// The tail of a program's output, thread-safe.
final class OutputBuffer: @unchecked Sendable {
    private var data = Data()
    private let lock = NSLock()

    func append(_ chunk: Data) {
        lock.lock()
        data.append(chunk)
        if data.count > ProcessRunner.outputLimit { data = data.suffix(ProcessRunner.outputLimit) }
        lock.unlock()
    }

    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }
}
