/// Encoding and decoding of pilot frames; pure functions over bytes, used by both ends.
///
/// Decoding never traps on any byte sequence: a frame from the network is untrusted until the
/// mutual proof is done, and a bad one is an error, never a crash.
extension PilotFrame {
    /// Frames larger than this are refused (a corrupt length must not allocate gigabytes).
    public static let maximumLength = 256 * 1024 * 1024

    enum Kind: UInt8 {
        case hello = 1, welcome, load, loaded, unload, batch, results, heartbeat, credit, drain, bye, authenticate, returned
    }

    /// The whole frame, length prefix included.
    public func encoded() -> [UInt8] {
        var body: [UInt8] = []
        let kind: Kind
        switch self {
        case .hello(let h):
            kind = .hello
            body = JSONValue.object([
                "credential": .string(h.credential), "job_id": .int(Int64(h.jobID)), "node": .string(h.node),
                "cores": .int(Int64(h.cores)), "memory_mb": .int(Int64(h.memoryMB)), "gpus": .int(Int64(h.gpus)),
                "walltime_end": .int(h.walltimeEnd), "pool": .string(h.pool), "slots": .int(Int64(h.slots)),
                "nonce": .string(h.nonce), "isolation": .string(h.isolation), "resident": .array(h.resident.map { .string($0) }),
            ]).encoded()
        case .welcome(let w):
            kind = .welcome
            body = JSONValue.object([
                "session": .int(Int64(w.session)), "pool": .string(w.pool), "nonce": .string(w.nonce), "proof": .string(w.proof),
                "frame_limit": .int(Int64(w.frameLimit)),
            ]).encoded()
        case .authenticate(let proof):
            kind = .authenticate
            body = JSONValue.object(["proof": .string(proof)]).encoded()
        case .load(let s):
            kind = .load
            body = JSONValue.object([
                "key": .string(s.key), "digest": .string(s.digest), "directory": .string(s.directory), "metadata": s.metadata,
                "environment": s.environment.json,
            ]).encoded()
        case .loaded(let key, let error, let log):
            kind = .loaded
            body = JSONValue.object(["key": .string(key), "error": error.map { .string($0) } ?? .null, "log": .string(log)]).encoded()
        case .unload(let key): kind = .unload; body = JSONValue.object(["key": .string(key)]).encoded()
        case .batch(let b):
            kind = .batch
            let header = JSONValue.object(["key": .string(b.key), "timeout": .double(b.timeoutSeconds)]).encoded()
            body.appendInteger(b.id)
            body.appendInteger(UInt32(header.count))
            body += header
            body.appendInteger(UInt32(b.parameters.count))
            body += b.parameters
            body.appendInteger(UInt32(b.items.count))
            for item in b.items {
                body.appendInteger(item.id)
                body.appendInteger(UInt32(item.payload.count))
                body += item.payload
            }
        case .results(let r):
            kind = .results
            body.appendInteger(r.batchID)
            body.appendInteger(UInt32(r.items.count))
            for item in r.items {
                body.appendInteger(item.id)
                switch item.outcome {
                case .output(let bytes):
                    body.append(0)
                    body.appendInteger(UInt32(bytes.count))
                    body += bytes
                case .error(let message):
                    let bytes = Array(message.utf8)
                    body.append(1)
                    body.appendInteger(UInt32(bytes.count))
                    body += bytes
                }
            }
            let log = Array(r.log.utf8)
            body.appendInteger(UInt32(log.count))
            body += log
        case .heartbeat(let j): kind = .heartbeat; body = j.encoded()
        case .credit(let slots): kind = .credit; body = JSONValue.object(["slots": .int(Int64(slots))]).encoded()
        case .drain(let reason): kind = .drain; body = JSONValue.object(["reason": .string(reason)]).encoded()
        case .bye(let reason, let returned):
            kind = .bye
            body = JSONValue.object(["reason": .string(reason), "returned": .array(returned.map { .int(Int64(bitPattern: $0)) })]).encoded()
        case .returned(let key, let batches):
            kind = .returned
            body = JSONValue.object(["key": .string(key), "batches": .array(batches.map { .int(Int64(bitPattern: $0)) })]).encoded()
        }
        var out: [UInt8] = []
        out.reserveCapacity(body.count + 5)
        out.appendInteger(UInt32(body.count + 1))
        out.append(kind.rawValue)
        out += body
        return out
    }

    /// The frame's type name, for logs and refusals.
    public var name: String {
        switch self {
        case .hello: return "hello"
        case .welcome: return "welcome"
        case .authenticate: return "authenticate"
        case .load: return "load"
        case .loaded: return "loaded"
        case .unload: return "unload"
        case .batch: return "batch"
        case .results: return "results"
        case .heartbeat: return "heartbeat"
        case .credit: return "credit"
        case .drain: return "drain"
        case .bye: return "bye"
        case .returned: return "returned"
        }
    }

    /// Decodes one frame from `type` and `body` (the bytes after the length prefix's type byte).
    public static func decode(type: UInt8, body: ArraySlice<UInt8>) throws(DLHubError) -> PilotFrame {
        guard let kind = Kind(rawValue: type) else { throw DLHubError(.badRequest, "unknown pilot frame type \(type)") }
        func json() throws(DLHubError) -> JSONValue {
            do { return try JSONValue.parse(body) } catch { throw DLHubError(.badRequest, "bad \(kind) frame: \(error)") }
        }
        func missing(_ field: String) -> DLHubError { DLHubError(.badRequest, "bad \(kind) frame: missing or invalid \(field)") }
        func int(_ j: JSONValue, _ field: String, default value: Int64? = nil) throws(DLHubError) -> Int64 {
            if let v = j[field]?.intValue { return v }
            if j[field] == nil, let value { return value }
            throw missing(field)
        }
        switch kind {
        case .hello:
            let j = try json()
            guard let credential = j["credential"]?.stringValue else { throw missing("credential") }
            let job = try int(j, "job_id")
            guard let jobID = UInt32(exactly: job) else { throw missing("job_id") }
            return .hello(
                PilotHello(
                    credential: credential, jobID: jobID, node: j["node"]?.stringValue ?? "", cores: Int(try int(j, "cores", default: 1)),
                    memoryMB: Int(try int(j, "memory_mb", default: 0)), gpus: Int(try int(j, "gpus", default: 0)),
                    walltimeEnd: try int(j, "walltime_end", default: 0), pool: j["pool"]?.stringValue ?? "",
                    slots: Int(try int(j, "slots", default: 1)), nonce: j["nonce"]?.stringValue ?? "",
                    isolation: j["isolation"]?.stringValue ?? "",
                    resident: (j["resident"]?.arrayValue ?? []).map { $0.stringValue ?? "" }))
        case .welcome:
            let j = try json()
            guard let nonce = j["nonce"]?.stringValue, let proof = j["proof"]?.stringValue else { throw missing("nonce or proof") }
            let limit = try int(j, "frame_limit", default: Int64(maximumLength))
            return .welcome(
                PilotWelcome(
                    session: Int(try int(j, "session", default: 0)), pool: j["pool"]?.stringValue ?? "", nonce: nonce, proof: proof,
                    frameLimit: Int(min(max(limit, 64 * 1024), Int64(maximumLength)))))
        case .authenticate:
            guard let proof = try json()["proof"]?.stringValue else { throw missing("proof") }
            return .authenticate(proof: proof)
        case .load:
            let j = try json()
            guard let key = j["key"]?.stringValue, let digest = j["digest"]?.stringValue, let dir = j["directory"]?.stringValue,
                let meta = j["metadata"]
            else { throw missing("key, digest, directory or metadata") }
            return .load(
                ServableSpec(
                    key: key, digest: digest, directory: dir, metadata: meta, environment: WorkerEnvironment(json: j["environment"])))
        case .loaded:
            let j = try json()
            guard let key = j["key"]?.stringValue else { throw missing("key") }
            return .loaded(key: key, error: j["error"]?.stringValue, log: j["log"]?.stringValue ?? "")
        case .unload:
            guard let key = try json()["key"]?.stringValue else { throw missing("key") }
            return .unload(key: key)
        case .heartbeat: return .heartbeat(try json())
        case .credit:
            let slots = try int(try json(), "slots")
            guard let n = Int(exactly: slots), n >= 0, n <= 1024 else { throw missing("slots") }
            return .credit(slots: n)
        case .drain: return .drain(reason: try json()["reason"]?.stringValue ?? "")
        case .bye:
            let j = try json()
            let returned = (j["returned"]?.arrayValue ?? []).compactMap { $0.intValue.map { UInt64(bitPattern: $0) } }
            return .bye(reason: j["reason"]?.stringValue ?? "", returned: returned)
        case .returned:
            let j = try json()
            guard let key = j["key"]?.stringValue else { throw missing("key") }
            guard let list = j["batches"]?.arrayValue, list.count <= 1_000_000 else { throw missing("batches") }
            return .returned(key: key, batches: list.compactMap { $0.intValue.map { UInt64(bitPattern: $0) } })
        case .batch:
            var r = ByteReader(body)
            let id: UInt64 = try r.integer()
            let headerLength: UInt32 = try r.integer()
            let headerBytes = try r.bytes(Int(headerLength))
            guard let header = try? JSONValue.parse(headerBytes), let key = header["key"]?.stringValue else { throw missing("key") }
            let paramLength: UInt32 = try r.integer()
            let parameters = try r.bytes(Int(paramLength))
            let count: UInt32 = try r.integer()
            var items: [Batch.Item] = []
            items.reserveCapacity(Int(min(count, 100_000)))
            for _ in 0..<count {
                let itemID: UInt64 = try r.integer()
                let length: UInt32 = try r.integer()
                items.append(Batch.Item(id: itemID, payload: try r.bytes(Int(length))))
            }
            var timeout = header["timeout"]?.doubleValue ?? 60
            if !(timeout > 0 && timeout <= 86_400) { timeout = 60 }
            return .batch(Batch(id: id, key: key, parameters: parameters, timeoutSeconds: timeout, items: items))
        case .results:
            var r = ByteReader(body)
            let batchID: UInt64 = try r.integer()
            let count: UInt32 = try r.integer()
            var items: [ItemResult] = []
            items.reserveCapacity(Int(min(count, 100_000)))
            for _ in 0..<count {
                let itemID: UInt64 = try r.integer()
                let status: UInt8 = try r.integer()
                let length: UInt32 = try r.integer()
                let bytes = try r.bytes(Int(length))
                items.append(ItemResult(id: itemID, outcome: status == 0 ? .output(bytes) : .error(String(decoding: bytes, as: UTF8.self))))
            }
            var log = ""
            if !r.isAtEnd {
                let length: UInt32 = try r.integer()
                log = String(decoding: try r.bytes(Int(length)), as: UTF8.self)
            }
            return .results(BatchResults(batchID: batchID, items: items, log: log))
        }
    }
}

struct ByteReader {
    let bytes: ArraySlice<UInt8>
    var index: Int

    init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.index = bytes.startIndex
    }

    var isAtEnd: Bool { index >= bytes.endIndex }

    mutating func integer<T: FixedWidthInteger>() throws(DLHubError) -> T {
        let size = MemoryLayout<T>.size
        guard bytes.endIndex - index >= size else { throw DLHubError(.badRequest, "truncated pilot frame") }
        var v: T = 0
        for b in bytes[index..<index + size] { v = v << 8 | T(b) }
        index += size
        return v
    }

    mutating func bytes(_ n: Int) throws(DLHubError) -> [UInt8] {
        guard n >= 0, bytes.endIndex - index >= n else { throw DLHubError(.badRequest, "truncated pilot frame") }
        defer { index += n }
        return Array(bytes[index..<index + n])
    }
}

extension Array where Element == UInt8 {
    mutating func appendInteger<T: FixedWidthInteger>(_ value: T) {
        let size = MemoryLayout<T>.size
        for i in (0..<size).reversed() { append(UInt8(truncatingIfNeeded: value >> (i * 8))) }
    }
}
