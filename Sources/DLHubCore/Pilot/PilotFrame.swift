/// One message of the pilot protocol: a length-prefixed binary frame on the pilot's TCP
/// connection to `dlhubd` (DESIGN contract 5).
///
/// Wire format: `u32 length` (big-endian, of what follows), `u8 type`, body. Control frames carry
/// a JSON body; `batch` and `results` carry item payloads as opaque bytes, so the service forwards
/// inputs and outputs without decoding them. See docs/pilot-protocol.md.
public enum PilotFrame: Sendable, Equatable {
    /// pilot -> service, first frame: who and where the pilot is.
    case hello(PilotHello)
    /// service -> pilot: the hello checks out; carries the service's proof (see `PilotProof`).
    case welcome(PilotWelcome)
    /// pilot -> service: the pilot's proof; only after it does the service hand out work.
    case authenticate(proof: String)
    /// service -> pilot: keep this servable resident (start its worker).
    case load(ServableSpec)
    /// pilot -> service: a load finished (`error` set when it failed); `log` is what the worker
    /// wrote to stderr while loading (it has seen no inputs yet), bounded.
    case loaded(key: String, error: String?, log: String)
    /// service -> pilot: evict a servable. pilot -> service: a servable was evicted.
    case unload(key: String)
    /// service -> pilot: items to run.
    case batch(Batch)
    /// pilot -> service: per-item outputs or errors of one batch.
    case results(BatchResults)
    /// both ways: liveness; from the pilot it carries its current load.
    case heartbeat(JSONValue)
    /// pilot -> service: how many batches the pilot can hold at once (credit-based pull).
    case credit(slots: Int)
    /// service -> pilot: stop taking work, finish what is running, then say bye.
    case drain(reason: String)
    /// pilot -> service: leaving; `returned` are batch ids it hands back unfinished.
    case bye(reason: String, returned: [UInt64])
    /// pilot -> service: batches it will not run because `key` is no longer resident here (it
    /// was evicted while they were on the way); they go back to the queue, not counted as tries.
    case returned(key: String, batches: [UInt64])
}

public struct PilotHello: Sendable, Equatable {
    public var credential: String
    public var jobID: UInt32
    public var node: String
    public var cores: Int
    public var memoryMB: Int
    public var gpus: Int
    /// Unix time the job's walltime ends (0 when unknown).
    public var walltimeEnd: Int64
    public var pool: String
    public var slots: Int
    /// The pilot's fresh nonce for the mutual proof.
    public var nonce: String
    /// What the pilot's sandbox check found (`IsolationStatus` as text).
    public var isolation: String
    /// Queue keys of the servables the pilot already has workers for: a pilot that reconnects
    /// after a service restart keeps its workers, and the service sends their batches at once.
    public var resident: [String]

    /// Resident keys a hello may list at most (it must fit in the handshake frame).
    public static let maxResident = 128

    public init(
        credential: String, jobID: UInt32, node: String, cores: Int, memoryMB: Int, gpus: Int, walltimeEnd: Int64, pool: String, slots: Int,
        nonce: String, isolation: String, resident: [String] = []
    ) {
        self.resident = resident
        self.credential = credential
        self.jobID = jobID
        self.node = node
        self.cores = cores
        self.memoryMB = memoryMB
        self.gpus = gpus
        self.walltimeEnd = walltimeEnd
        self.pool = pool
        self.slots = slots
        self.nonce = nonce
        self.isolation = isolation
    }

    /// Nil when every field is within bounds, else what is wrong. A hello comes from the network
    /// before anything is proven, so nothing in it is trusted.
    public func problem(now: Int64) -> String? {
        if credential.isEmpty || credential.utf8.count > 4096 { return "the munge credential is missing or too long" }
        if jobID == 0 { return "job id 0" }
        if node.isEmpty || node.utf8.count > 255 || !node.utf8.allSatisfy(Self.isNameByte) { return "node name '\(node.prefix(64))'" }
        if pool.isEmpty || pool.utf8.count > 255 || !pool.utf8.allSatisfy(Self.isNameByte) { return "pool name '\(pool.prefix(64))'" }
        if !(1...65_536).contains(cores) { return "\(cores) cores" }
        if !(0...(1 << 30)).contains(memoryMB) { return "\(memoryMB) MB of memory" }
        if !(0...1024).contains(gpus) { return "\(gpus) GPUs" }
        if !(1...1024).contains(slots) { return "\(slots) slots" }
        if walltimeEnd < 0 || walltimeEnd > now + 400 * 86_400 { return "walltime end \(walltimeEnd)" }
        if !PilotProof.isWellFormed(nonce) { return "a malformed nonce" }
        if isolation.utf8.count > 1024 { return "an isolation report of \(isolation.utf8.count) bytes" }
        if resident.count > Self.maxResident { return "\(resident.count) resident servables" }
        if let bad = resident.first(where: {
            $0.isEmpty || $0.utf8.count > 200 || !$0.utf8.allSatisfy { Self.isNameByte($0) || $0 == 43 || $0 == 58 }
        }) {
            return "resident servable key '\(bad.prefix(64))'"
        }
        return nil
    }

    static func isNameByte(_ b: UInt8) -> Bool {
        (b >= 48 && b <= 57) || (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || b == 45 || b == 46 || b == 95
    }
}

/// The service's answer to a hello: the session and its proof.
public struct PilotWelcome: Sendable, Equatable {
    public var session: Int
    public var pool: String
    public var nonce: String
    public var proof: String
    /// The largest frame the service takes: the pilot keeps its results below it.
    public var frameLimit: Int

    public init(session: Int, pool: String, nonce: String, proof: String, frameLimit: Int = PilotFrame.maximumLength) {
        self.session = session
        self.pool = pool
        self.nonce = nonce
        self.proof = proof
        self.frameLimit = frameLimit
    }
}

/// What a pilot needs to start a worker for a servable version.
public struct ServableSpec: Sendable, Equatable {
    /// The worker key: one resident worker set per servable version and environment (the
    /// service's digest); parameters travel with each batch, never in here.
    public var key: String
    public var digest: String
    /// The version directory in the registry (read directly from the shared filesystem).
    public var directory: String
    /// The published servable.json.
    public var metadata: JSONValue
    /// What the worker runs with, resolved by the service.
    public var environment: WorkerEnvironment

    public init(key: String, digest: String, directory: String, metadata: JSONValue, environment: WorkerEnvironment = WorkerEnvironment()) {
        self.key = key
        self.digest = digest
        self.directory = directory
        self.metadata = metadata
        self.environment = environment
    }
}

/// A servable's environment as a pilot needs it: resolved paths, no building left to do.
public struct WorkerEnvironment: Sendable, Equatable {
    /// The Python interpreter for Python loaders (a built environment's `bin/python`); nil for the
    /// pilot's default.
    public var interpreter: String?
    /// Lmod modules to load before the worker starts.
    public var modules: [String]
    /// An Apptainer image to run the worker in.
    public var image: String?
    /// Whether the worker keeps the network (its pool allows it).
    public var network: Bool

    public init(interpreter: String? = nil, modules: [String] = [], image: String? = nil, network: Bool = false) {
        self.interpreter = interpreter
        self.modules = modules
        self.image = image
        self.network = network
    }

    var json: JSONValue {
        [
            "interpreter": interpreter.map { .string($0) } ?? .null, "modules": .array(modules.map { .string($0) }),
            "image": image.map { .string($0) } ?? .null, "network": .bool(network),
        ]
    }

    init(json: JSONValue?) {
        interpreter = json?["interpreter"]?.stringValue
        modules = json?["modules"]?.arrayValue?.compactMap(\.stringValue) ?? []
        image = json?["image"]?.stringValue
        network = json?["network"]?.boolValue ?? false
    }
}

public struct Batch: Sendable, Equatable {
    public var id: UInt64
    public var key: String
    /// Keyword arguments for every item of the batch (JSON object bytes).
    public var parameters: [UInt8]
    public var timeoutSeconds: Double
    public var items: [Item]

    public struct Item: Sendable, Equatable {
        public var id: UInt64
        /// The item's input as JSON bytes, exactly as the client sent it.
        public var payload: [UInt8]
        public init(id: UInt64, payload: [UInt8]) {
            self.id = id
            self.payload = payload
        }
    }

    public init(id: UInt64, key: String, parameters: [UInt8], timeoutSeconds: Double, items: [Item]) {
        self.id = id
        self.key = key
        self.parameters = parameters
        self.timeoutSeconds = timeoutSeconds
        self.items = items
    }
}

public struct BatchResults: Sendable, Equatable {
    public var batchID: UInt64
    public var items: [ItemResult]
    /// What the worker wrote to stderr while it ran this batch (bounded): it may show the batch's
    /// inputs, so it goes only to whoever sent all of them.
    public var log: String

    public init(batchID: UInt64, items: [ItemResult], log: String = "") {
        self.batchID = batchID
        self.items = items
        self.log = log
    }
}

/// One item's outcome: output JSON bytes, or an error message.
public struct ItemResult: Sendable, Equatable {
    public var id: UInt64
    public var outcome: Outcome

    public enum Outcome: Sendable, Equatable {
        case output([UInt8])
        case error(String)
    }

    public init(id: UInt64, outcome: Outcome) {
        self.id = id
        self.outcome = outcome
    }
}
