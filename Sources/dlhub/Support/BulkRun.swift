import DLHubCore
import Foundation
import Glibc

/// `dlhub run ID --inputs big.jsonl --output out.jsonl`: an input file of any size, one JSON
/// input per line, sent in chunks; one line per input in the output, in order
/// (`{"output": ...}` or `{"error": "..."}`).
///
/// Memory stays bounded (two chunks at most), and an interrupted run resumes where it stopped:
/// `<output>.progress` records how far the input was consumed and written, and the tasks
/// already submitted, whose results are fetched rather than computed again.
struct BulkRun {
    let client: ServiceClient
    let reference: ServableReference
    let inputPath: String
    let outputPath: String
    let parameters: [String: JSONValue]
    var chunkInputs = 1000
    var chunkBytes = 8 << 20
    /// Chunks submitted ahead of the one being written.
    var window = 2
    var restart = false

    var progressPath: String { outputPath + ".progress" }

    /// A submitted chunk: its task and the input bytes it covers.
    struct Pending {
        var task: String
        var start: UInt64
        var end: UInt64
        var count: Int
        var json: JSONValue { ["task": .string(task), "start": .int(Int64(start)), "end": .int(Int64(end)), "count": .int(Int64(count))] }
    }

    /// How far a run has got, saved after every chunk written.
    struct State {
        var servable: String
        var input: String
        /// Inputs answered and written, and the input bytes they came from.
        var done: Int
        var consumed: UInt64
        /// SHA-256 of the input's first `consumed` bytes: a resumed run checks it reads the same file.
        var prefixSHA: String
        var outputBytes: UInt64
        var failed: Int
        var pending: [Pending]

        var json: JSONValue {
            [
                "servable": .string(servable), "input": .string(input), "done": .int(Int64(done)), "consumed": .int(Int64(consumed)),
                "prefix_sha256": .string(prefixSHA), "output_bytes": .int(Int64(outputBytes)), "failed": .int(Int64(failed)),
                "pending": .array(pending.map(\.json)),
            ]
        }

        init(servable: String, input: String) {
            self.servable = servable
            self.input = input
            done = 0
            consumed = 0
            prefixSHA = ContentDigest.FileHasher().hex()
            outputBytes = 0
            failed = 0
            pending = []
        }

        init?(_ j: JSONValue) {
            guard let s = j["servable"]?.stringValue, let i = j["input"]?.stringValue, let d = j["done"]?.intValue,
                let c = j["consumed"]?.intValue, let p = j["prefix_sha256"]?.stringValue, let o = j["output_bytes"]?.intValue
            else { return nil }
            servable = s
            input = i
            done = Int(d)
            consumed = UInt64(c)
            prefixSHA = p
            outputBytes = UInt64(o)
            failed = Int(j["failed"]?.intValue ?? 0)
            pending = (j["pending"]?.arrayValue ?? []).compactMap { p in
                guard let t = p["task"]?.stringValue, let a = p["start"]?.intValue, let b = p["end"]?.intValue, let n = p["count"]?.intValue
                else { return nil }
                return Pending(task: t, start: UInt64(a), end: UInt64(b), count: Int(n))
            }
        }
    }

    func run() async throws {
        Interrupts.shared.install()
        defer { Interrupts.shared.leaveCritical() }
        let total = try Self.countInputs(inputPath)
        var state = try loadState()
        let input = try LineReader(path: inputPath)
        // The prefix already consumed must be the one the saved state saw.
        var hasher = ContentDigest.FileHasher()
        try input.hashPrefix(state.consumed, into: &hasher)
        guard hasher.hex() == state.prefixSHA else {
            throw CLIError(
                "\(inputPath) changed before the point \(progressPath) says was reached; start again with --restart (or give the original file)"
            )
        }
        let output = try openOutput(truncatingTo: state.outputBytes)
        defer { try? output.close() }
        var progress = BulkProgress(total: total, done: state.done)
        progress.show(failed: state.failed)

        // Tasks submitted before an interruption: their results, not a second computation.
        var inFlight = state.pending
        var nextOffset = inFlight.last?.end ?? state.consumed
        try input.seek(to: nextOffset)
        var exhausted = false
        while true {
            while inFlight.count < window, !exhausted {
                let chunk = try input.nextChunk(
                    maxInputs: chunkInputs, maxBytes: chunkBytes, lineOffset: state.done + inFlight.reduce(0) { $0 + $1.count })
                guard !chunk.lines.isEmpty else {
                    exhausted = true
                    break
                }
                // From the moment the service may accept the chunk until its task id is saved, a
                // Ctrl-C waits: exiting in between would send the chunk again on resume and
                // compute it twice (BulkRunTests saw 101,000 items dispatched for 100,000 inputs).
                Interrupts.shared.enterCritical()
                let task = try await submit(chunk.lines)
                inFlight.append(Pending(task: task, start: nextOffset, end: chunk.end, count: chunk.lines.count))
                nextOffset = chunk.end
                state.pending = inFlight
                try save(state)
                Interrupts.shared.leaveCritical()
            }
            guard let head = inFlight.first else { break }
            let task = try await result(of: head, input: input)
            let (bytes, failed) = Self.outputLines(task, count: head.count)
            try output.write(contentsOf: Data(bytes))
            try output.synchronize()
            // Everything this chunk consumed goes into the prefix hash.
            try input.hashRange(head.start, head.end, into: &hasher)
            inFlight.removeFirst()
            state.done += head.count
            state.failed += failed
            state.consumed = head.end
            state.prefixSHA = hasher.hex()
            state.outputBytes += UInt64(bytes.count)
            state.pending = inFlight
            try save(state)
            progress.done = state.done
            progress.show(failed: state.failed)
        }
        progress.finish()
        unlink(progressPath)
        let summary =
            "\(state.done) input(s) answered into \(outputPath)"
            + (state.failed > 0 ? "; \(state.failed) failed (their lines hold {\"error\": ...})" : "")
        FileHandle.standardError.write(Data((summary + "\n").utf8))
        if state.failed > 0 { throw CLIError("\(state.failed) of \(state.done) input(s) failed; see \(outputPath)") }
    }

    // MARK: the service

    func submit(_ lines: [[UInt8]]) async throws -> String {
        var body = Array(#"{"inputs":["#.utf8)
        for (i, line) in lines.enumerated() {
            if i > 0 { body.append(UInt8(ascii: ",")) }
            body += line
        }
        body.append(UInt8(ascii: "]"))
        if !parameters.isEmpty { body += Array(#","parameters":"#.utf8) + JSONValue.object(parameters).encoded() }
        body.append(UInt8(ascii: "}"))
        // wait=0: stored before the answer, so its id survives an interruption of either side.
        let reply = try await client.request("POST", "/v1/servables/\(reference)/run?wait=0", body: body)
        guard let id = reply.json["id"]?.stringValue else { throw CLIError("the service accepted a chunk but gave no task id") }
        return id
    }

    /// The finished task of a chunk; submitted again if the service no longer has it.
    func result(of pending: Pending, input: LineReader) async throws -> JSONValue {
        do {
            var reply = try await client.request("GET", "/v1/tasks/\(pending.task)?wait=30", acceptStatuses: [202])
            while reply.status == 202 {
                reply = try await client.request("GET", "/v1/tasks/\(pending.task)?wait=30", acceptStatuses: [202])
            }
            return reply.json
        } catch let e as CLIError where e.status == 404 {
            // Past the service's retention: computed again from the same input lines.
            let lines = try input.lines(from: pending.start, to: pending.end)
            let task = try await submit(lines)
            return try await result(of: Pending(task: task, start: pending.start, end: pending.end, count: pending.count), input: input)
        }
    }

    static func outputLines(_ reply: JSONValue, count: Int) -> ([UInt8], Int) {
        let task = TaskDocument(json: reply)
        let outputs = task.outputs ?? []
        let errors = task.errors ?? []
        var out: [UInt8] = []
        var failed = 0
        for i in 0..<count {
            if i < errors.count, let message = errors[i] {
                out += JSONValue.object(["error": .string(message)]).encoded()
                failed += 1
            } else if i < outputs.count {
                out += JSONValue.object(["output": outputs[i]]).encoded()
            } else {
                out += JSONValue.object(["error": "no result from the service"]).encoded()
                failed += 1
            }
            out.append(0x0A)
        }
        return (out, failed)
    }

    // MARK: files

    func loadState() throws -> State {
        let fm = FileManager.default
        let servable = reference.description
        if restart {
            unlink(progressPath)
            unlink(outputPath)
        }
        if let data = fm.contents(atPath: progressPath) {
            guard let json = try? JSONValue.parse(Array(data)), let state = State(json) else {
                throw CLIError("\(progressPath) is not a progress file this version can read; start again with --restart")
            }
            guard state.servable == servable else {
                throw CLIError("\(progressPath) is the progress of a run of \(state.servable), not \(servable); start again with --restart")
            }
            FileHandle.standardError.write(Data("resuming: \(state.done) input(s) already in \(outputPath)\n".utf8))
            return state
        }
        if let attributes = try? fm.attributesOfItem(atPath: outputPath), ((attributes[.size] as? NSNumber)?.intValue ?? 0) > 0 {
            throw CLIError("\(outputPath) already exists and there is no \(progressPath) to resume from; remove it, or pass --restart")
        }
        return State(servable: servable, input: inputPath)
    }

    func save(_ state: State) throws {
        let temp = progressPath + ".tmp"
        guard FileManager.default.createFile(atPath: temp, contents: Data(state.json.encoded(pretty: true))) else {
            throw CLIError("cannot write \(temp)")
        }
        guard rename(temp, progressPath) == 0 else { throw CLIError("cannot write \(progressPath)") }
    }

    func openOutput(truncatingTo size: UInt64) throws -> FileHandle {
        if !FileManager.default.fileExists(atPath: outputPath) {
            guard FileManager.default.createFile(atPath: outputPath, contents: nil) else { throw CLIError("cannot create \(outputPath)") }
        }
        guard let handle = FileHandle(forWritingAtPath: outputPath) else { throw CLIError("cannot write \(outputPath)") }
        try handle.truncate(atOffset: size)
        try handle.seekToEnd()
        return handle
    }

    /// Non-blank lines of a file, counted without holding it.
    static func countInputs(_ path: String) throws -> Int {
        let reader = try LineReader(path: path)
        var n = 0
        while let line = try reader.nextLine() { if !line.bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { n += 1 } }
        return n
    }
}

/// Lines of a file, read a block at a time, with their byte offsets.
final class LineReader {
    let handle: FileHandle
    let path: String
    private var buffer: [UInt8] = []
    private var bufferStart: UInt64 = 0
    private var position = 0
    private var eof = false

    init(path: String) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw CLIError("cannot read \(path)") }
        self.handle = handle
        self.path = path
    }

    deinit { try? handle.close() }

    func seek(to offset: UInt64) throws {
        try handle.seek(toOffset: offset)
        buffer = []
        bufferStart = offset
        position = 0
        eof = false
    }

    /// The next line without its newline, and the offset just past it; nil at the end.
    func nextLine() throws -> (bytes: [UInt8], end: UInt64)? {
        while true {
            if let newline = buffer[position...].firstIndex(of: 0x0A) {
                let line = Array(buffer[position..<newline])
                position = newline + 1
                return (line, bufferStart + UInt64(position))
            }
            if eof {
                guard position < buffer.count else { return nil }
                let line = Array(buffer[position...])
                position = buffer.count
                return (line, bufferStart + UInt64(position))
            }
            bufferStart += UInt64(position)
            buffer.removeFirst(position)
            position = 0
            let block = try handle.read(upToCount: 1 << 20) ?? Data()
            if block.isEmpty { eof = true } else { buffer += block }
        }
    }

    /// Up to `maxInputs` non-blank lines (and `maxBytes`), each checked to be JSON.
    func nextChunk(maxInputs: Int, maxBytes: Int, lineOffset: Int) throws -> (lines: [[UInt8]], end: UInt64) {
        var lines: [[UInt8]] = []
        var bytes = 0
        var end = bufferStart + UInt64(position)
        while lines.count < maxInputs, bytes < maxBytes, let (line, after) = try nextLine() {
            end = after
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            do { _ = try JSONValue.parse(line) } catch {
                throw CLIError(
                    "\(path): input \(lineOffset + lines.count + 1) is not valid JSON (\(error)); fix that line and run the same command again to resume"
                )
            }
            lines.append(line)
            bytes += line.count
        }
        return (lines, end)
    }

    /// The non-blank lines between two offsets (a chunk sent again).
    func lines(from start: UInt64, to end: UInt64) throws -> [[UInt8]] {
        let reader = try LineReader(path: path)
        try reader.seek(to: start)
        var out: [[UInt8]] = []
        while let (line, after) = try reader.nextLine(), after <= end {
            if !line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { out.append(line) }
            if after == end { break }
        }
        return out
    }

    /// Feeds the file's bytes in [start, end) to `hasher`, without moving this reader.
    func hashRange(_ start: UInt64, _ end: UInt64, into hasher: inout ContentDigest.FileHasher) throws {
        guard end > start, let other = FileHandle(forReadingAtPath: path) else { return }
        defer { try? other.close() }
        try other.seek(toOffset: start)
        var left = end - start
        while left > 0 {
            let block = try other.read(upToCount: Int(min(left, 1 << 20))) ?? Data()
            if block.isEmpty { break }
            block.withUnsafeBytes { hasher.update($0) }
            left -= UInt64(block.count)
        }
    }

    func hashPrefix(_ end: UInt64, into hasher: inout ContentDigest.FileHasher) throws {
        try hashRange(0, end, into: &hasher)
    }
}

/// `12000/100000 inputs (12%), 3 failed`: rewritten in place on a terminal; elsewhere a plain
/// line every tenth of the way.
struct BulkProgress {
    let total: Int
    var done: Int
    let terminal = isatty(2) == 1
    var lastDecile = -1

    mutating func show(failed: Int) {
        let percent = total > 0 ? done * 100 / total : 100
        let line = "\(done)/\(total) inputs (\(percent)%)" + (failed > 0 ? ", \(failed) failed" : "")
        if terminal {
            FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8))
        } else if percent / 10 != lastDecile {
            lastDecile = percent / 10
            FileHandle.standardError.write(Data("\(line)\n".utf8))
        }
    }

    func finish() {
        if terminal { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

/// Ctrl-C during a bulk run: at once, unless a chunk is being submitted and its task id not yet
/// saved, in which case the run exits right after the save (a second Ctrl-C exits at once).
final class Interrupts: @unchecked Sendable {
    static let shared = Interrupts()
    private let lock = NSLock()
    private var critical = false
    private var pending = false
    private var source: (any DispatchSourceSignal)?

    func install() {
        lock.lock()
        defer { lock.unlock() }
        guard source == nil else { return }
        signal(SIGINT, SIG_IGN)
        let s = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        s.setEventHandler { [weak self] in self?.interrupted() }
        s.resume()
        source = s
    }

    private func interrupted() {
        lock.lock()
        let inside = critical && !pending
        pending = true
        lock.unlock()
        if !inside { Self.exit() }
    }

    func enterCritical() {
        lock.lock()
        critical = true
        lock.unlock()
    }

    func leaveCritical() {
        lock.lock()
        critical = false
        let exitNow = pending
        lock.unlock()
        if exitNow { Self.exit() }
    }

    static func exit() -> Never {
        FileHandle.standardError.write(Data("\ninterrupted: run the same command again to resume\n".utf8))
        Glibc.exit(130)
    }
}
