import DLHubCore
import Foundation
import ServiceLifecycle

/// Periodic clean-up: tasks past their retention (unanswered ones are failed first),
/// environments nobody uses any more.
public struct Housekeeping: Service {
    let tasks: TaskStore
    let dispatcher: Dispatcher
    let retentionSeconds: Int
    let environments: EnvironmentStore
    let catalog: ServableCatalog

    public init(tasks: TaskStore, dispatcher: Dispatcher, retentionSeconds: Int, environments: EnvironmentStore, catalog: ServableCatalog) {
        self.tasks = tasks
        self.dispatcher = dispatcher
        self.retentionSeconds = retentionSeconds
        self.environments = environments
        self.catalog = catalog
    }

    public func run() async throws {
        var lastGC = Date()
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let cutoff = Date().timeIntervalSince1970 - Double(retentionSeconds)
            // Unanswered past the retention: failed (so the client hears), then purged like the rest.
            if let expired = try? await tasks.expire(createdBefore: cutoff), !expired.isEmpty { await dispatcher.expire(expired) }
            _ = try? await tasks.purge(finishedBefore: cutoff)
            if Date().timeIntervalSince(lastGC) > 3600 {
                lastGC = Date()
                await collectEnvironments()
            }
            do { try await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(60)) } } catch { break }
        }
    }

    /// Removes environments that no published (not withdrawn) servable declares and nobody used lately.
    func collectEnvironments() async {
        guard environments.enabled else { return }
        let registry = catalog.registry, logger = catalog.logger
        guard let records = try? await BlockingIO.run({ registry.allRecords(logger: logger) }) else { return }
        var referenced: Set<String> = []
        for record in records.records where record.withdrawal == nil && record.metadata.environment.kind == .python {
            referenced.insert(await environments.id(for: record.metadata.environment.requirements))
        }
        _ = await environments.collectGarbage(referenced: referenced)
    }
}

/// When a graceful stop begins, answers every request waiting for its task (`?wait=`) with what
/// the task has now (a 202 and its id, the task kept for the next start), so that a stop is not
/// held by the longest wait in flight (found by the soak: a request waiting an hour held it an
/// hour; docs/requests.md states the bound).
struct WaitRelease: Service {
    let dispatcher: Dispatcher
    let waiters: TaskWaiters

    func run() async throws {
        // Returns when the stop begins; throws when the group is cancelled instead.
        do { try await gracefulShutdown() } catch { return }
        await dispatcher.stopWaiting()
        await waiters.stopWaiting()
    }
}
