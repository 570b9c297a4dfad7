import DLHubCore

extension TaskRecord {
    /// What the task is, as the API shows it (`TaskDocument`), without what it answered: a
    /// finished task's outputs are added as stored by `TaskAnswer`. `running` says whether a
    /// pilot has some of its inputs now (only the dispatcher knows).
    public func document(running: Bool = false) -> TaskDocument {
        TaskDocument(
            id: id, servable: servable, digest: digest, status: status ?? (running ? "running" : "queued"), created: created,
            items: itemCount, remaining: remaining, finished: finished, cancelled: cancelled)
    }
}
