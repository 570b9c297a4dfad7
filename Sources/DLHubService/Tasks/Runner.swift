import DLHubCore
import Foundation
import Logging

/// Turns run requests into durable tasks and queued items, and restores unfinished ones at start.
public final class Runner: Sendable {
    let catalog: ServableCatalog
    let store: TaskStore
    let dispatcher: Dispatcher
    let waiters: TaskWaiters
    let environments: EnvironmentStore
    let pools: [PoolConfiguration]
    let logger: Logger

    public init(
        catalog: ServableCatalog, store: TaskStore, dispatcher: Dispatcher, waiters: TaskWaiters, environments: EnvironmentStore,
        pools: [PoolConfiguration], logger: Logger
    ) {
        self.catalog = catalog
        self.store = store
        self.dispatcher = dispatcher
        self.waiters = waiters
        self.environments = environments
        self.pools = pools
        self.logger = logger
    }

    /// Largest number of inputs one request may carry.
    public static let maxInputs = 100_000

    public struct Accepted: Sendable {
        public var taskID: String
        public var pool: String
        /// Kept in memory until answered or its wait ran out (see `LiveTasks`).
        public var live: Bool
        /// A live task answered within its wait; nil when the task is in the store (then its id
        /// is what the caller gets).
        public var answered: LiveTasks.Entry?
    }

    /// Validates a run request against the servable's declared input type and queues it.
    ///
    /// `wait` > 0: the caller waits that many seconds for the answer, so the task is kept in
    /// memory and written to the store only if the wait runs out (`Dispatcher.persistLive`);
    /// otherwise it is durable before this returns.
    public func accept(
        _ reference: ServableReference, body: [UInt8], caller: Caller, wait: Double = 0
    ) async throws(DLHubError) -> Accepted {
        let live = wait > 0
        let record = try await catalog.resolve(reference, caller: caller)
        if let w = record.withdrawal {
            throw DLHubError(
                .withdrawn,
                "\(record.id)@\(record.version) was withdrawn on \(w.at)\(w.reason.isEmpty ? "" : " (\(w.reason))"); run another version (`dlhub describe \(record.id)` lists them)"
            )
        }
        let request = try RunRequest.read(body, maxInputs: Self.maxInputs)
        let metadata = record.metadata
        if let problem = request.problem(body, type: metadata.input) {
            throw DLHubError(.invalidInput, "\(problem); \(record.id) takes \(metadata.input)")
        }
        let single = request.single
        let parameters = request.parameters
        let pool: PoolConfiguration
        switch Placement.pool(for: metadata.resources, in: pools) {
        case .success(let p): pool = p
        case .failure(let e): throw e
        }
        let parameterBytes = parameters.encoded()
        let taskID = UUID().uuidString.lowercased()
        // Each input goes to the pilot as the caller wrote it (checked above, whitespace taken
        // out), not parsed and written out again.
        let payloads = request.payloads(body)
        let bytes = payloads.reduce(0) { $0 + $1.count }
        let key = Self.queueKey(digest: record.digest, parameters: parameters)
        // `"cache": false` keeps the request out of the cache both ways: not answered from it, not added to it.
        let cached = metadata.deterministic && request.cache
        let resolved = await environment(for: record, pool: pool)
        let next: Dispatcher.Next
        if let failure = resolved.failure {
            next = .fail(failure)
        } else {
            next = .enqueue(
                key: key, spec: spec(record, resolved.environment), metadata: metadata, pool: pool.name,
                parameters: parameterBytes, waitingFor: resolved.waitingFor)
        }
        let servable = "\(record.id)@\(record.version)"
        let owner = caller.login
        @Sendable func items(_ itemIDs: [UInt64]) -> [Dispatcher.QueuedItem] {
            zip(itemIDs, payloads).map { Dispatcher.QueuedItem(id: $0, taskID: taskID, owner: owner, payload: $1, cacheable: cached) }
        }
        if live, cached, let outputs = dispatcher.cachedOutputs(key: key, owner: owner, payloads: payloads) {
            // Every input answered by the cache: no dispatcher, no pilot, no disk.
            var entry = LiveTasks.Entry(
                id: taskID, owner: owner, servable: servable, digest: record.digest, pool: pool.name, single: single,
                parameters: parameterBytes, itemIDs: Array(1...UInt64(outputs.count)), inputs: [])
            entry.outcomes = outputs.map { .output($0) }
            entry.remaining = 0
            entry.finished = Date().timeIntervalSince1970
            return Accepted(taskID: taskID, pool: pool.name, live: true, answered: entry)
        }
        if live {
            // Answered from memory if it finishes within the wait; stored only if it does not.
            // Reserved, queued and waited for in one call to the dispatcher.
            let answered = try await dispatcher.submitLive(
                owner: owner, count: payloads.count, bytes: bytes, wait: wait, cacheKey: cached ? key : nil, then: next
            ) {
                itemIDs in
                (
                    items(itemIDs),
                    LiveTasks.Entry(
                        id: taskID, owner: owner, servable: servable, digest: record.digest, pool: pool.name, single: single,
                        parameters: parameterBytes, itemIDs: itemIDs, inputs: payloads)
                )
            }
            if let answered { return Accepted(taskID: taskID, pool: pool.name, live: true, answered: answered) }
            // The wait ran out: stored (with what it has so far) before its id is handed out.
            return Accepted(taskID: taskID, pool: pool.name, live: true, answered: try await dispatcher.persistLive(taskID))
        }
        // Over quota: refused before anything is written.
        let itemIDs = try await dispatcher.reserve(owner: owner, items: payloads.count, bytes: bytes)
        do throws(DLHubError) {
            _ = try await store.accept(
                .init(
                    id: taskID, owner: owner, servable: servable, digest: record.digest, pool: pool.name, single: single,
                    parameters: parameterBytes, inputs: payloads, itemIDs: itemIDs))
        } catch {
            await dispatcher.unreserve(owner: owner, items: payloads.count, bytes: bytes)
            throw error
        }
        await dispatcher.submit(items(itemIDs), live: nil, cacheKey: cached ? key : nil, then: next)
        return Accepted(taskID: taskID, pool: pool.name, live: false)
    }

    // MARK: What the routes ask of a task

    /// Whether some of a task's inputs are on a pilot now.
    public func isRunning(_ taskID: String) async -> Bool { await dispatcher.isRunning(taskID) }

    /// Cancels a stored task (see `Dispatcher.cancel`).
    public func cancel(_ taskID: String, message: String) async throws(DLHubError) -> (cancelled: Int, running: Int) {
        try await dispatcher.cancel(taskID, message: message)
    }

    /// What the workers of a servable version said, for its owner.
    public func logEntries(digest: String) async -> [JSONValue] { await dispatcher.logEntries(digest: digest) }

    /// The latest load failure of a servable version, for `describe`.
    public func loadFailure(digest: String) async -> JSONValue? { await dispatcher.loadFailure(digest: digest) }

    /// What a servable's workers run with: for a servable with its own Python environment, the
    /// build it waits for, or why that build failed.
    func environment(
        for record: RegistryRecord, pool: PoolConfiguration
    ) async -> (
        environment: WorkerEnvironment, waitingFor: String?, failure: String?
    ) {
        let declared = record.metadata.environment
        var environment = WorkerEnvironment(modules: declared.modules, image: declared.image, network: pool.workerNetwork)
        guard declared.kind == .python, environments.enabled else { return (environment, nil, nil) }
        let (id, status) = await environments.ensure(declared.requirements, for: record.owner)
        switch status {
        case .ready(let interpreter):
            environment.interpreter = interpreter
            await environments.touch(id)
            return (environment, nil, nil)
        case .building:
            return (environment, id, nil)
        case .failed(let message):
            return (environment, nil, "\(record.id)@\(record.version) cannot run: \(message)")
        }
    }

    /// What a pilot loads: one worker per servable version and environment, whatever the
    /// parameters (they travel with each batch), so that parameters never mint workers.
    func spec(_ record: RegistryRecord, _ environment: WorkerEnvironment) -> ServableSpec {
        ServableSpec(
            key: record.digest, digest: record.digest, directory: record.directory, metadata: record.metadata.document,
            environment: environment)
    }

    /// For a task not yet running: the environment build it waits for, as the API shows it.
    public func environmentWait(digest: String) async -> WaitingFor? {
        guard await dispatcher.isWaitingForEnvironment(digest: digest),
            let entry = try? await catalog.index.entry(digest: digest),
            let record = try? catalog.cachedRecord(owner: entry.owner, name: entry.name, version: entry.version)
        else { return nil }
        let requirements = record.metadata.environment.requirements
        guard case .building(let since)? = await environments.status(requirements) else { return nil }
        return .building(
            id: await environments.id(for: requirements), packages: requirements.requirements.map(\.installArgument),
            seconds: Int(Date().timeIntervalSince(since)))
    }

    /// The dispatcher's queue: items with different parameters never share a batch (they may
    /// share a worker: see `spec`).
    static func queueKey(digest: String, parameters: JSONValue) -> String {
        if parameters.objectValue?.isEmpty ?? true { return digest }
        return digest + "+" + ContentDigest.sha256Hex(parameters.encoded()).prefix(12)
    }

    /// Queues again everything accepted before a restart and not yet answered, a page at a time
    /// (a store with millions of waiting items is not read into memory at once).
    public func restore() async throws(DLHubError) {
        await dispatcher.startItemIDs(after: try await store.maxItemID())
        var after: UInt64 = 0
        var restored = 0
        while true {
            let page = try await store.unfinished(after: after, limit: 10_000)
            guard let last = page.last else { break }
            after = last.itemID
            restored += page.count
            try await restore(page)
        }
        if restored > 0 { logger.info("re-queued tasks accepted before the restart", metadata: ["items": "\(restored)"]) }
    }

    func restore(_ pending: [TaskStore.PendingItem]) async throws(DLHubError) {
        var failed: [ItemResult] = []
        var groups: [String: [TaskStore.PendingItem]] = [:]
        for item in pending { groups[item.digest + "\u{0}" + String(decoding: item.parameters, as: UTF8.self), default: []].append(item) }
        for items in groups.values {
            let first = items[0]
            let parameters = (try? JSONValue.parse(first.parameters)) ?? .object([:])
            guard let entry = try await catalog.index.entry(digest: first.digest),
                let record = try catalog.cachedRecord(owner: entry.owner, name: entry.name, version: entry.version),
                record.withdrawal == nil,
                case .success(let pool) = Placement.pool(for: record.metadata.resources, in: pools)
            else {
                failed += items.map {
                    ItemResult(
                        id: $0.itemID,
                        outcome: .error("\(first.servable) is no longer available (withdrawn or removed) after the service restarted"))
                }
                continue
            }
            let queued = items.map { Dispatcher.QueuedItem(id: $0.itemID, taskID: $0.taskID, owner: $0.owner, payload: $0.input) }
            await dispatcher.restoreReservations(queued)
            let resolved = await environment(for: record, pool: pool)
            if let failure = resolved.failure {
                await dispatcher.fail(queued, failure)
                continue
            }
            await dispatcher.enqueue(
                key: Self.queueKey(digest: first.digest, parameters: parameters), spec: spec(record, resolved.environment),
                metadata: record.metadata, pool: pool.name, parameters: first.parameters, items: queued, waitingFor: resolved.waitingFor)
        }
        if !failed.isEmpty { await waiters.finished(try await store.complete(failed)) }
    }
}
