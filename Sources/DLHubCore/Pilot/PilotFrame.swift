/// One message of the pilot protocol: a length-prefixed binary frame on the pilot's TCP
/// connection to `dlhubd` (DESIGN contract 5).
///
/// Wire format: `u32 length` (big-endian, of what follows), `u8 type`, body. Control frames carry
/// a JSON body; `batch` and `results` carry item payloads as opaque bytes, so the service forwards
/// inputs and outputs without decoding them. See docs/pilot-protocol.md.
public enum PilotFrame: Sendable, Equatable {
    /// pilot -> service, first frame: who and where the pilot is.
    case hello(PilotHello)
    /// service -> pilot: accepted; the pilot may start pulling work.
    case welcome(JSONValue)
    /// service -> pilot: keep this servable resident (start its worker).
    case load(ServableSpec)
    /// pilot -> service: a load finished (`error` set when it failed).
    case loaded(key: String, error: String?)
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

    public init(
        credential: String, jobID: UInt32, node: String, cores: Int, memoryMB: Int, gpus: Int, walltimeEnd: Int64, pool: String, slots: Int
    ) {
        self.credential = credential
        self.jobID = jobID
        self.node = node
        self.cores = cores
        self.memoryMB = memoryMB
        self.gpus = gpus
        self.walltimeEnd = walltimeEnd
        self.pool = pool
        self.slots = slots
    }
}

/// What a pilot needs to start a worker for a servable version.
public struct ServableSpec: Sendable, Equatable {
    /// The queue key: digest, plus a hash of non-default parameters when there are any.
    public var key: String
    public var digest: String
    /// The version directory in the registry (read directly from the shared filesystem).
    public var directory: String
    /// The published servable.json.
    public var metadata: JSONValue

    public init(key: String, digest: String, directory: String, metadata: JSONValue) {
        self.key = key
        self.digest = digest
        self.directory = directory
        self.metadata = metadata
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

    public init(batchID: UInt64, items: [ItemResult]) {
        self.batchID = batchID
        self.items = items
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
