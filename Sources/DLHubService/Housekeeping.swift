import DLHubCore
import Foundation
import ServiceLifecycle

/// Periodic clean-up: finished tasks past their retention, environments nobody uses any more.
public struct Housekeeping: Service {
    let tasks: TaskStore
    let retentionSeconds: Int
    let environments: EnvironmentStore
    let catalog: ServableCatalog

    public init(tasks: TaskStore, retentionSeconds: Int, environments: EnvironmentStore, catalog: ServableCatalog) {
        self.tasks = tasks
        self.retentionSeconds = retentionSeconds
        self.environments = environments
        self.catalog = catalog
    }

    public func run() async throws {
        var lastGC = Date()
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            _ = try? await tasks.purge(finishedBefore: Date().timeIntervalSince1970 - Double(retentionSeconds))
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
