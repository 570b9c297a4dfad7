import DLHubCore

/// What the dispatcher knows of each worker key (a servable version and environment) beyond
/// its queues: its name for people and who may see it (for the pilots report, which names the
/// servables resident on each pilot), and the interpreter its workers run (so that a rebuilt
/// environment unloads exactly the workers that ran in it). A plain value, unit-tested.
struct ServableDirectory {
    struct Label: Equatable {
        var name: String
        var owner: String
        var visibleTo: [Principal]
    }

    private(set) var labels: [String: Label] = [:]
    private var interpreters: [String: String] = [:]

    /// Notes a worker key as its queue is fed.
    mutating func note(_ spec: ServableSpec, metadata: ServableMetadata) {
        if labels[spec.key] == nil {
            let d = spec.metadata["dlhub"]
            labels[spec.key] = Label(
                name: "\(d?["owner"]?.stringValue ?? "?")/\(d?["name"]?.stringValue ?? "?")@\(d?["version"]?.intValue ?? 0)",
                owner: metadata.owner ?? "", visibleTo: metadata.visibleTo)
        }
        if let interpreter = spec.environment.interpreter, !interpreter.isEmpty { interpreters[spec.key] = interpreter }
    }

    mutating func setInterpreter(_ interpreter: String, for key: String) { interpreters[key] = interpreter }

    /// The worker keys whose interpreter lies in the environment `id`.
    func keys(inEnvironment id: String) -> [String] {
        let marker = "/" + id + "/"
        return interpreters.filter { $0.value.contains(marker) }.map(\.key).sorted()
    }

    /// A resident servable as `caller` may know it: its name, or "private" when they may not see it.
    func displayName(_ key: String, for caller: Caller?) -> String {
        // No label: resident on a pilot since before a service restart and not asked for since
        // (its owner and visibility are not known here yet, so nothing of it is shown).
        guard let label = labels[key] else { return "(resident from before a restart)" }
        guard let caller else { return label.name }
        return AccessPolicy.canSee(owner: label.owner, visibleTo: label.visibleTo, caller: caller) ? label.name : "private"
    }

    /// Forgets labels of keys no longer queued, loaded or in flight, once they far outnumber
    /// those (a bound, not a schedule: a label costs little).
    mutating func prune(keeping shown: Set<String>) {
        if labels.count > shown.count * 2 + 100 { labels = labels.filter { shown.contains($0.key) } }
    }
}
