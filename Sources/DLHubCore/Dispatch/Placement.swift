/// Which pool serves a servable, from its declared resources.
public enum Placement {
    /// The first pool, in configuration order, that offers what the servable needs; a servable
    /// naming a pool (or partition) gets that one. Nil when none fits, with the reason.
    public static func pool(
        for resources: ServableMetadata.Resources, in pools: [PoolConfiguration]
    ) -> Result<PoolConfiguration, DLHubError> {
        if let wanted = resources.pool {
            if let p = pools.first(where: { $0.name == wanted || $0.partition == wanted }) { return .success(p) }
            return .failure(
                DLHubError(
                    .unavailable,
                    "the servable asks for pool '\(wanted)', which this service does not have; pools: \(pools.map(\.name).joined(separator: ", "))"
                ))
        }
        for p in pools where fits(resources, p) { return .success(p) }
        return .failure(
            DLHubError(
                .unavailable,
                "no pool offers \(resources.cores) core(s), \(resources.memoryMB) MB and \(resources.gpus) GPU(s) per node; ask the site to add a pool with such nodes"
            ))
    }

    static func fits(_ r: ServableMetadata.Resources, _ p: PoolConfiguration) -> Bool {
        r.cores <= (p.coresPerNode ?? 1) && r.memoryMB <= p.memoryPerNodeMB && r.gpus <= p.gpusPerNode
    }
}
