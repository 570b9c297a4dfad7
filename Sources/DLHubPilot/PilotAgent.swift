import DLHubCore
import Foundation
import Logging

/// The pilot's state: which servables are resident, which batches are queued or running, and
/// whether it is draining. Frames from the service come in through `handle(_:)`; frames to the
/// service go out through `send`.
public actor PilotAgent {
    public struct Settings: Sendable {
        public var python: String
        public var workerScript: String
        public var cores: Int
        public var memoryMB: Int
        /// Workers resident at most (all servables together); the least recently used idle one is evicted.
        public var maxWorkers: Int
        public var startTimeoutSeconds: Double = 300
        public var isolation: IsolationMode = .bubblewrap
        public var bubblewrap = "bwrap"
        public var readOnlyPaths: [String] = []
        /// Paths no sandbox may bind whatever a file says (the service's state directory).
        public var neverBound: [String] = []
        public var containerCommand = ApptainerCommand.defaultTemplate
        public var workerTmpMB = 1024
        /// Processes and threads one worker may run at once (see `ProcessWatch`).
        public var workerMaxProcesses = 128
        public var workerNetwork = false
        /// The job's GPUs (`CUDA_VISIBLE_DEVICES`), shared out to workers that declare GPUs.
        public var visibleDevices: String?

        public init(python: String, workerScript: String, cores: Int, memoryMB: Int, maxWorkers: Int) {
            self.python = python
            self.workerScript = workerScript
            self.cores = cores
            self.memoryMB = memoryMB
            self.maxWorkers = maxWorkers
        }

        var launcher: WorkerLauncher.Settings {
            var l = WorkerLauncher.Settings()
            l.isolation = isolation
            l.bubblewrap = bubblewrap
            l.readOnlyPaths = readOnlyPaths
            l.neverBound = neverBound
            l.containerCommand = containerCommand
            l.workerTmpMB = workerTmpMB
            l.workerNetwork = workerNetwork
            l.python = python
            l.workerScript = workerScript
            l.memoryMB = memoryMB
            l.maxWorkers = maxWorkers
            l.workerMaxProcesses = workerMaxProcesses
            return l
        }
    }

    struct Resident {
        var spec: ServableSpec
        var metadata: ServableMetadata
        var idle: [WorkerProcess] = []
        var busy = 0
        var queue: [Batch] = []
        var lastUsed = Date()
        var total: Int { idle.count + busy }
    }

    let settings: Settings
    let send: @Sendable (PilotFrame) async -> Void
    let logger: Logger
    /// Checked once at start: how workers are sandboxed on this node.
    let launcher: WorkerLauncher
    /// The pilot's own environment (without its secret), for loading modules.
    let environment: [String: String]
    var gpus: GPUAssignment
    /// The largest frame the service takes (from its welcome).
    var frameLimit = PilotFrame.maximumLength

    func setFrameLimit(_ limit: Int) { frameLimit = limit }
    var residents: [String: Resident] = [:]
    /// Loads under way (their first worker is starting), with the memory each declared: they
    /// count against the worker limit and the memory budget as resident workers do.
    var loading: [String: Int] = [:]
    /// Loads that did not fit (every worker busy or starting): started, oldest first, as
    /// workers free up, so a flood of loads never runs more workers than `maxWorkers`.
    var waitingLoads: [ServableSpec] = []
    var running: Set<UInt64> = []
    /// Batches are numbered here (the service's numbers start again after it restarts): the
    /// service's number of each batch, and the connection it came on.
    var batchOrigins: [UInt64: (serviceID: UInt64, connection: Int)] = [:]
    var nextLocalBatch: UInt64 = 1
    /// Counts connections to the service: results of a batch that came on an earlier one are
    /// not sent on a later one (that service took the batch back when it lost this pilot).
    private(set) var connection = 0
    public private(set) var draining = false
    var drained: CheckedContinuation<Void, Never>?

    public init(settings: Settings, logger: Logger, send: @escaping @Sendable (PilotFrame) async -> Void) {
        self.settings = settings
        self.logger = logger
        self.send = send
        launcher = WorkerLauncher(settings: settings.launcher)
        environment = ProcessInfo.processInfo.environment.filter { $0.key != PilotProof.environmentVariable }
        gpus = GPUAssignment(visibleDevices: settings.visibleDevices)
    }

    /// What the sandbox check at start found, for the hello.
    public nonisolated var isolation: IsolationStatus { launcher.status }

    /// Batches the pilot can hold at once: one per core, at least one.
    public var slots: Int { max(1, settings.cores) }

    public func handle(_ frame: PilotFrame) async {
        switch frame {
        case .load(let spec): await load(spec)
        case .unload(let key): unload(key)
        case .batch(let batch): enqueue(batch)
        case .drain(let reason): await beginDrain(reason: reason)
        case .welcome, .heartbeat: break
        case .hello, .authenticate, .loaded, .results, .credit, .bye, .returned:
            logger.warning("unexpected frame from the service", metadata: ["frame": "\(frame)"])
        }
    }

    func load(_ spec: ServableSpec, waited: Bool = false) async {
        if residents[spec.key] != nil {
            await send(.loaded(key: spec.key, error: nil, log: ""))
            return
        }
        guard loading[spec.key] == nil, waited || !waitingLoads.contains(where: { $0.key == spec.key }) else { return }
        let metadata: ServableMetadata
        do { metadata = try ServableMetadata.validate(spec.metadata) } catch {
            await send(.loaded(key: spec.key, error: error.message, log: ""))
            return
        }
        let memory = metadata.resources.memoryMB
        evictIfFull(needing: 1, memoryMB: memory)
        guard fits(memoryMB: memory) else {
            if waited { waitingLoads.insert(spec, at: 0) } else { waitingLoads.append(spec) }
            logger.info(
                "load waits for a worker to free up", metadata: ["servable.key": "\(spec.key)", "waiting": "\(waitingLoads.count)"])
            return
        }
        loading[spec.key] = memory
        defer {
            loading.removeValue(forKey: spec.key)
            admitWaitingLoads()
        }
        // Start the first worker now, so the load error (missing packages, bad model) reaches the service.
        do {
            let worker = try await startWorker(spec, metadata)
            guard !draining else {
                retire(worker)
                return
            }
            residents[spec.key] = Resident(spec: spec, metadata: metadata, idle: [worker])
            logger.info("servable resident", metadata: ["servable.key": "\(spec.key)", "servable.dir": "\(spec.directory)"])
            await send(.loaded(key: spec.key, error: nil, log: worker.loadLog))
        } catch let failure as StartFailure {
            logger.warning("servable failed to load", metadata: ["servable.key": "\(spec.key)", "error": "\(failure.message)"])
            await send(.loaded(key: spec.key, error: failure.message, log: failure.log))
        } catch {
            logger.warning("servable failed to load", metadata: ["servable.key": "\(spec.key)", "error": "\(error)"])
            await send(.loaded(key: spec.key, error: "\(error)", log: ""))
        }
    }

    func unload(_ key: String) {
        guard let r = residents.removeValue(forKey: key) else { return }
        r.idle.forEach { retire($0) }
        // Batches that had not started are answered, not dropped (running ones finish on their workers).
        for batch in r.queue {
            let results = BatchResults(
                batchID: batch.id,
                items: batch.items.map {
                    ItemResult(
                        id: $0.id,
                        outcome: .error(
                            "the servable was unloaded from this pilot before this input ran (its environment is being rebuilt); send it again"
                        ))
                })
            Task { await finish(batch, results) }
        }
    }

    /// Workers running or starting: resident ones, and the first worker of each load under way.
    var workerCount: Int { residents.values.reduce(0) { $0 + $1.total } + loading.count }

    /// Memory the resident and starting workers declared (`dlhub.resources.memory`), in MB.
    var memoryInUse: Int {
        residents.values.reduce(0) { $0 + $1.total * $1.metadata.resources.memoryMB } + loading.values.reduce(0, +)
    }

    /// Whether one more worker fits under the worker limit and the memory budget (a worker
    /// larger than the whole budget still runs when it would be alone).
    func fits(memoryMB memory: Int) -> Bool {
        guard workerCount < settings.maxWorkers else { return false }
        return memory == 0 || memoryInUse + memory <= settings.memoryMB || workerCount == 0
    }

    /// Starts the oldest waiting load once a worker can be evicted or has gone.
    func admitWaitingLoads() {
        guard !draining, let next = waitingLoads.first else { return }
        let memory = (try? ServableMetadata.validate(next.metadata))?.resources.memoryMB ?? 0
        evictIfFull(needing: 1, memoryMB: memory)
        guard fits(memoryMB: memory) else { return }
        waitingLoads.removeFirst()
        Task { await self.load(next, waited: true) }
    }

    /// Evicts least recently used idle workers until `needing` more workers (and `memoryMB`) fit.
    func evictIfFull(needing: Int, memoryMB: Int = 0) {
        while workerCount + needing > settings.maxWorkers || (memoryMB > 0 && memoryInUse + memoryMB > settings.memoryMB) {
            let candidates = residents.filter { !$0.value.idle.isEmpty }.sorted { $0.value.lastUsed < $1.value.lastUsed }
            guard let (key, _) = candidates.first else { return }
            let worker = residents[key]!.idle.removeFirst()
            retire(worker)
            if residents[key]!.total == 0, residents[key]!.queue.isEmpty {
                residents.removeValue(forKey: key)
                let send = self.send
                Task { await send(.unload(key: key)) }
                logger.info("evicted least recently used servable", metadata: ["servable.key": "\(key)"])
            }
        }
    }

    func enqueue(_ received: Batch) {
        var batch = received
        batch.id = nextLocalBatch
        nextLocalBatch += 1
        batchOrigins[batch.id] = (received.id, connection)
        guard residents[batch.key] != nil else {
            // Evicted while the batch was on its way: handed back unstarted, to go to a pilot that has it.
            batchOrigins.removeValue(forKey: batch.id)
            let send = self.send
            Task { await send(.returned(key: received.key, batches: [received.id])) }
            return
        }
        residents[batch.key]!.queue.append(batch)
        schedule(batch.key)
    }

    /// Starts queued batches on idle workers, adding workers while cores and the budget allow.
    func schedule(_ key: String) {
        while let r = residents[key], !r.queue.isEmpty {
            if !r.idle.isEmpty {
                let worker = residents[key]!.idle.removeLast()
                let batch = take(key)
                start(batch, on: worker, metadata: r.metadata, spec: r.spec)
            } else if canAddWorker(r) {
                let batch = take(key)
                Task { await self.runOnNewWorker(batch, r.spec, r.metadata) }
            } else {
                break
            }
        }
    }

    /// After a worker or core frees up: this servable first, then any other with queued batches
    /// (they may have been waiting for exactly that core).
    func scheduleAll(first key: String) {
        schedule(key)
        for other in residents.keys where other != key && !(residents[other]?.queue.isEmpty ?? true) { schedule(other) }
    }

    /// Moves the next queued batch of `key` to running.
    private func take(_ key: String) -> Batch {
        residents[key]!.busy += 1
        residents[key]!.lastUsed = Date()
        let batch = residents[key]!.queue.removeFirst()
        running.insert(batch.id)
        return batch
    }

    /// Another worker for a busy servable: only while its cores fit beside the running ones.
    private func canAddWorker(_ r: Resident) -> Bool {
        let need = max(1, r.metadata.resources.cores)
        let busyCores = residents.values.reduce(0) { $0 + $1.busy * max(1, $1.metadata.resources.cores) }
        guard busyCores + need <= max(settings.cores, need) else { return false }
        let memory = r.metadata.resources.memoryMB
        if workerCount >= settings.maxWorkers || (memory > 0 && memoryInUse + memory > settings.memoryMB) {
            evictIfFull(needing: 1, memoryMB: memory)
        }
        return workerCount < settings.maxWorkers && (memory == 0 || memoryInUse + memory <= settings.memoryMB)
    }

    func runOnNewWorker(_ batch: Batch, _ spec: ServableSpec, _ metadata: ServableMetadata) async {
        do {
            let worker = try await startWorker(spec, metadata)
            await run(batch, on: worker, metadata: metadata, spec: spec)
        } catch {
            residents[spec.key]?.busy -= 1
            await finish(
                batch,
                BatchResults(
                    batchID: batch.id, items: batch.items.map { ItemResult(id: $0.id, outcome: .error("cannot start a worker: \(error)")) })
            )
            scheduleAll(first: spec.key)
            admitWaitingLoads()
        }
    }

    /// Runs a batch on an idle worker: the exchange and the reading of the reply happen on the
    /// worker's own thread, and the agent hears back once (no task to wake before it starts).
    func start(_ batch: Batch, on worker: WorkerProcess, metadata: ServableMetadata, spec: ServableSpec) {
        let line = Self.request(batch, items: batch.items)
        let timeout = batch.timeoutSeconds
        worker.queue.async {
            let outcome = Result { try Self.results(of: batch.items, worker.exchange(line, timeout: timeout)) }
            Task { await self.ran(batch, on: worker, metadata: metadata, spec: spec, outcome) }
        }
    }

    func run(_ batch: Batch, on worker: WorkerProcess, metadata: ServableMetadata, spec: ServableSpec) async {
        let outcome: Result<([ItemResult], String), any Error>
        do { outcome = .success(try await Self.execute(batch, items: batch.items, on: worker)) } catch { outcome = .failure(error) }
        await ran(batch, on: worker, metadata: metadata, spec: spec, outcome)
    }

    /// A batch's first attempt ended: its results go to the service, or, when the worker broke,
    /// each item runs alone to find the culprit.
    func ran(
        _ batch: Batch, on worker: WorkerProcess, metadata: ServableMetadata, spec: ServableSpec,
        _ outcome: Result<([ItemResult], String), any Error>
    ) async {
        var worker: WorkerProcess? = worker
        var results: [ItemResult]
        var log = ""
        switch outcome {
        case .success(let done):
            (results, log) = done
        case .failure(let failure):
            if let w = worker { retire(w) }
            worker = nil
            log = ""
            // Find the culprit: run each item alone on a fresh worker, so only the bad ones fail;
            // a crash message then carries only stderr of that one item's run. A worker that had
            // ended before the batch reached it ran nothing: its one item runs on a fresh worker.
            let gone: Bool
            if case WorkerProcess.Failure.goneBeforeRequest? = failure as? WorkerProcess.Failure { gone = true } else { gone = false }
            if batch.items.count == 1, !gone {
                results = [ItemResult(id: batch.items[0].id, outcome: .error("\(failure)"))]
            } else {
                results = []
                for item in batch.items {
                    do {
                        if worker == nil { worker = try await startWorker(spec, metadata) }
                        results += try await Self.execute(batch, items: [item], on: worker!).results
                    } catch {
                        if let w = worker { retire(w) }
                        worker = nil
                        results.append(ItemResult(id: item.id, outcome: .error("\(error)")))
                    }
                }
            }
        }
        if var r = residents[batch.key] {
            r.busy -= 1
            if let worker, worker.isRunning { r.idle.append(worker) } else if let worker { retire(worker) }
            residents[batch.key] = r
        } else if let worker {
            retire(worker)
        }
        await finish(batch, BatchResults(batchID: batch.id, items: results, log: log))
        scheduleAll(first: batch.key)
        admitWaitingLoads()
    }

    /// Stops a worker and gives its GPUs back.
    func retire(_ worker: WorkerProcess) {
        worker.stop()
        gpus.release(worker.id)
    }

    func finish(_ batch: Batch, _ results: BatchResults) async {
        running.remove(batch.id)
        let origin = batchOrigins.removeValue(forKey: batch.id)
        if let origin, origin.connection == connection {
            var answer = results
            answer.batchID = origin.serviceID
            await send(.results(Self.fit(answer, within: frameLimit)))
        } else {
            logger.info("results of a batch from an earlier connection to the service dropped", metadata: ["batch": "\(batch.id)"])
        }
        if draining, running.isEmpty { drained?.resume(); drained = nil }
    }

    /// The connection to the service was lost (it restarted or crashed): batches that had not
    /// started are dropped (the service queues their items again when it comes back), running
    /// ones finish on their workers, and the workers stay resident for the next connection.
    public func disconnected() {
        connection += 1
        // The next service asks again for what it needs.
        waitingLoads.removeAll()
        var dropped = 0
        for key in residents.keys {
            for batch in residents[key]!.queue { batchOrigins.removeValue(forKey: batch.id) }
            dropped += residents[key]!.queue.count
            residents[key]!.queue.removeAll()
        }
        logger.info(
            "lost the service; keeping resident workers",
            metadata: ["resident": "\(residents.count)", "running": "\(running.count)", "dropped_batches": "\(dropped)"])
    }

    /// Queue keys of the servables with workers here, for the hello after a reconnect.
    public var residentKeys: [String] { Array(residents.keys.sorted().prefix(PilotHello.maxResident)) }

    /// Results that fit in one frame of at most `limit` bytes: the largest outputs are replaced by
    /// an error saying why, one by one, until they do (so an oversized output fails its own item
    /// only, and the service never sees a frame it must refuse).
    static func fit(_ results: BatchResults, within limit: Int) -> BatchResults {
        var out = results
        if out.log.utf8.count > 16 * 1024 { out.log = String(decoding: Array(out.log.utf8.suffix(16 * 1024)), as: UTF8.self) }
        func size(_ r: ItemResult) -> Int {
            switch r.outcome {
            case .output(let b): return b.count
            case .error(let m): return m.utf8.count
            }
        }
        var total = 64 + out.log.utf8.count + out.items.reduce(0) { $0 + 13 + size($1) }
        let budget = limit - 1024
        for i in out.items.indices.sorted(by: { size(out.items[$0]) > size(out.items[$1]) }) where total > budget {
            guard case .output(let bytes) = out.items[i].outcome else { continue }
            let message =
                "the output for this input is \(bytes.count) bytes, more than a pilot may send the service in one batch (\(limit) bytes); return less, or ask the site to raise max_pilot_frame_bytes"
            total -= bytes.count - message.utf8.count
            out.items[i].outcome = .error(message)
        }
        return out
    }

    /// Runs items as one worker request; item payloads are spliced in as they came.
    static func execute(
        _ batch: Batch, items: [Batch.Item], on worker: WorkerProcess
    ) async throws -> (
        results: [ItemResult], log: String
    ) {
        let line = request(batch, items: items)
        let timeout = batch.timeoutSeconds
        return try await withCheckedThrowingContinuation { continuation in
            worker.queue.async {
                continuation.resume(with: Result { try results(of: items, worker.exchange(line, timeout: timeout)) })
            }
        }
    }

    /// The worker request line for `items` (payloads spliced in as they came).
    static func request(_ batch: Batch, items: [Batch.Item]) -> [UInt8] {
        var request: [UInt8] = Array(#"{"batch":"#.utf8) + Array(String(batch.id).utf8) + Array(#","parameters":"#.utf8)
        request += batch.parameters.isEmpty ? Array("{}".utf8) : batch.parameters
        request += Array(#","inputs":["#.utf8)
        for (i, item) in items.enumerated() {
            if i > 0 { request.append(UInt8(ascii: ",")) }
            request += item.payload
        }
        request += Array("]}".utf8)
        return request
    }

    /// Each item's outcome from a worker's reply; a reply that breaks the protocol is an error.
    static func results(of items: [Batch.Item], _ exchanged: (reply: [UInt8], log: String)) throws -> ([ItemResult], String) {
        guard let outcomes = outcomes(exchanged.reply), outcomes.count == items.count else {
            throw WorkerProcess.Failure.protocolError(
                "the worker broke the protocol: expected {\"results\": [...]} with \(items.count) entries")
        }
        return (zip(items, outcomes).map { item, outcome in ItemResult(id: item.id, outcome: outcome) }, exchanged.log)
    }

    /// The outcomes in a worker's reply (`{"results": [{"output": ...} | {"error": "..."}, ...]}`):
    /// each output is checked to be one well-formed JSON value and forwarded as the worker wrote
    /// it, never parsed into a tree and written out again. Nil when the reply breaks the protocol.
    static func outcomes(_ reply: [UInt8]) -> [ItemResult.Outcome]? {
        var scanner = JSONScanner(reply)
        guard let members = scanner.objectMembers() else { return nil }
        scanner.skipSpace()
        guard scanner.position == reply.count,
            let results = members.last(where: { $0.key.elementsEqual("results".utf8) }),
            let elements = JSONScanner.arrayElements(reply, in: results.value)
        else { return nil }
        var outcomes: [ItemResult.Outcome] = []
        outcomes.reserveCapacity(elements.count)
        for element in elements {
            var entry = JSONScanner(reply)
            entry.skipTo(element.lowerBound)
            guard let fields = entry.objectMembers() else {
                outcomes.append(.error("the servable returned neither output nor error"))
                continue
            }
            if let output = fields.last(where: { $0.key.elementsEqual("output".utf8) }) {
                outcomes.append(.output(Array(reply[output.value])))
            } else if let error = fields.last(where: { $0.key.elementsEqual("error".utf8) }),
                case .string(let message)? = try? JSONValue.parse(reply[error.value])
            {
                outcomes.append(.error(message))
            } else {
                outcomes.append(.error("the servable returned neither output nor error"))
            }
        }
        return outcomes
    }

    /// Why a worker did not start, with what it wrote to stderr while trying.
    struct StartFailure: Error, CustomStringConvertible {
        var message: String
        var log: String
        var description: String { message }
    }

    func startWorker(_ spec: ServableSpec, _ metadata: ServableMetadata) async throws -> WorkerProcess {
        let label = spec.key
        let needGPUs = metadata.resources.gpus
        let token = UUID().uuidString
        var devices: [String] = []
        if needGPUs > 0 {
            guard let taken = gpus.take(needGPUs, for: token) else {
                throw StartFailure(
                    message:
                        "the servable needs \(needGPUs) GPU(s) of its own, but \(gpus.free.count) of this pilot's \(gpus.count) are free",
                    log: "")
            }
            devices = taken
        }
        let launch: WorkerLauncher.Launch
        do { launch = try launcher.launch(spec, metadata, gpus: devices, pilotEnvironment: environment) } catch {
            gpus.release(token)
            throw StartFailure(message: "\(error)", log: "")
        }
        let timeout = settings.startTimeoutSeconds
        let pinned = devices
        let lineLimit = frameLimit
        let processLimit = settings.workerMaxProcesses
        let started = ContinuousClock.now
        do {
            let worker = try await withCheckedThrowingContinuation { continuation in
                DispatchQueue.global().async {
                    do {
                        continuation.resume(
                            returning: try WorkerProcess(
                                launch: launch, id: token, gpus: pinned, startTimeout: timeout, maxLineBytes: lineLimit,
                                maxProcesses: processLimit, label: label))
                    } catch { continuation.resume(throwing: error) }
                }
            }
            let elapsed = ContinuousClock.now - started
            logger.info(
                "worker started",
                metadata: [
                    "servable.key": "\(label)",
                    "worker.isolation": "\(spec.environment.image != nil ? "apptainer" : settings.isolation.rawValue)",
                    "worker.start_ms": "\(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)",
                ])
            return worker
        } catch {
            gpus.release(token)
            switch error as? WorkerProcess.Failure {
            case .exited(_, let stderr)?, .notReady(_, let stderr)?: throw StartFailure(message: "\(error)", log: stderr)
            default: break
            }
            throw StartFailure(message: "\(error)", log: "")
        }
    }

    /// Stops taking work: queued batches go back to the service, running ones finish.
    public func beginDrain(reason: String) async {
        guard !draining else { return }
        draining = true
        waitingLoads.removeAll()
        logger.info("draining", metadata: ["reason": "\(reason)"])
        await send(.credit(slots: 0))
        var returned: [UInt64] = []
        for key in residents.keys {
            for batch in residents[key]!.queue {
                if let origin = batchOrigins.removeValue(forKey: batch.id), origin.connection == connection {
                    returned.append(origin.serviceID)
                }
            }
            residents[key]!.queue.removeAll()
        }
        if !running.isEmpty {
            await withCheckedContinuation { self.drained = $0 }
        }
        await send(.bye(reason: reason, returned: returned))
        for r in residents.values { r.idle.forEach { retire($0) } }
        residents.removeAll()
    }

    /// Load figures for heartbeats and `dlhub pilots`.
    public func status() -> JSONValue {
        [
            "resident": .array(residents.keys.sorted().map { .string($0) }),
            "workers": .int(Int64(workerCount)),
            "loading": .int(Int64(loading.count + waitingLoads.count)),
            "running": .int(Int64(running.count)),
            "queued": .int(Int64(residents.values.reduce(0) { $0 + $1.queue.count })),
            "draining": .bool(draining),
        ]
    }

    public func shutdown() {
        for r in residents.values { r.idle.forEach { retire($0) } }
        residents.removeAll()
    }
}
