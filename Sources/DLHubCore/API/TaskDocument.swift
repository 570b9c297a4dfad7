import Foundation

/// A task as the HTTP API shows it: the answer to a run request and to `GET /v1/tasks/{id}`
/// (`Task` in docs/openapi.yaml). The one definition of its fields, for the service that writes
/// it and the clients (`dlhub`, the Python client) that read it.
public struct TaskDocument: Sendable, Equatable {
    public var id: String
    public var servable: String
    public var digest: String
    /// `queued`, `running`, `building_environment`, `completed`, `failed`,
    /// `completed_with_errors` or `cancelled` (kept as text: a newer service may say more).
    public var status: String
    public var created: Double
    public var finished: Double?
    /// When its owner cancelled it.
    public var cancelled: Double?
    public var items: Int
    public var remaining: Int
    /// A request with one `input`: its output, or its error.
    public var output: JSONValue?
    public var error: String?
    /// A request with `inputs`: outputs in order (null where one failed) and, if any failed, errors.
    public var outputs: [JSONValue]?
    public var errors: [String?]?
    /// While unfinished: what it waits for, and where to ask again.
    public var waitingFor: WaitingFor?
    public var location: String?
    /// The answer to a cancel: inputs that will never run, and inputs that were already running.
    public var cancelledItems: Int?
    public var runningItems: Int?

    public static let finishedStatuses: Set<String> = ["completed", "failed", "completed_with_errors", "cancelled"]

    public init(
        id: String, servable: String, digest: String, status: String, created: Double, items: Int, remaining: Int,
        finished: Double? = nil, cancelled: Double? = nil
    ) {
        self.id = id
        self.servable = servable
        self.digest = digest
        self.status = status
        self.created = created
        self.items = items
        self.remaining = remaining
        self.finished = finished
        self.cancelled = cancelled
    }

    public var isFinished: Bool { finished != nil || Self.finishedStatuses.contains(status) }

    /// Reads what a service sent; fields it did not send stay empty.
    public init(json j: JSONValue) {
        id = j["id"]?.stringValue ?? ""
        servable = j["servable"]?.stringValue ?? ""
        digest = j["digest"]?.stringValue ?? ""
        status = j["status"]?.stringValue ?? ""
        created = j["created"]?.doubleValue ?? 0
        finished = j["finished"]?.doubleValue
        cancelled = j["cancelled"]?.doubleValue
        items = Int(j["items"]?.intValue ?? 0)
        remaining = Int(j["remaining"]?.intValue ?? 0)
        output = j["output"]
        error = j["error"]?.stringValue
        outputs = j["outputs"]?.arrayValue
        errors = j["errors"]?.arrayValue?.map(\.stringValue)
        waitingFor = j["waiting_for"].flatMap { $0.isNull ? nil : WaitingFor(json: $0) }
        location = j["location"]?.stringValue
        cancelledItems = j["cancelled_items"]?.intValue.map(Int.init)
        runningItems = j["running_items"]?.intValue.map(Int.init)
    }

    public var json: JSONValue {
        var out: [String: JSONValue] = [
            "id": .string(id), "servable": .string(servable), "digest": .string(digest), "status": .string(status),
            "created": .double(created), "items": .int(Int64(items)), "remaining": .int(Int64(remaining)),
        ]
        if let finished {
            out["finished"] = .double(finished)
            out["seconds"] = .double(finished - created)
        }
        if let cancelled { out["cancelled"] = .double(cancelled) }
        if let output { out["output"] = output }
        if let error { out["error"] = .string(error) }
        if let outputs { out["outputs"] = .array(outputs) }
        if let errors { out["errors"] = .array(errors.map { $0.map(JSONValue.string) ?? .null }) }
        if let waitingFor { out["waiting_for"] = waitingFor.json }
        if let location { out["location"] = .string(location) }
        if let cancelledItems { out["cancelled_items"] = .int(Int64(cancelledItems)) }
        if let runningItems { out["running_items"] = .int(Int64(runningItems)) }
        return .object(out)
    }
}

/// What an unfinished task waits for: an environment being built, a paused pool, a pilot job
/// being submitted or waiting in Slurm's queue, or a running pilot.
public struct WaitingFor: Sendable, Equatable {
    public var pool: String?
    /// Why the pool takes no work (an admin paused it, or Slurm refuses its jobs).
    public var paused: String?
    public var jobID: Int?
    /// Slurm's state of the pilot job (`PENDING`, `RUNNING`), or `SUBMITTING`.
    public var state: String?
    /// Slurm's reason for a pending job (`Resources`, `Priority`, ...).
    public var reason: String?
    public var waitedSeconds: Double?
    /// The servable's Python environment being built: its packages, and for how long.
    public var environmentPackages: [String]?
    public var environmentID: String?
    public var buildingSeconds: Int?

    public init(
        pool: String? = nil, paused: String? = nil, jobID: Int? = nil, state: String? = nil, reason: String? = nil,
        waitedSeconds: Double? = nil
    ) {
        self.pool = pool
        self.paused = paused
        self.jobID = jobID
        self.state = state
        self.reason = reason
        self.waitedSeconds = waitedSeconds
    }

    public static func building(id: String, packages: [String], seconds: Int) -> WaitingFor {
        var w = WaitingFor()
        w.environmentID = id
        w.environmentPackages = packages
        w.buildingSeconds = seconds
        return w
    }

    public init(json j: JSONValue) {
        pool = j["pool"]?.stringValue
        paused = j["paused"]?.stringValue
        jobID = j["job_id"]?.intValue.map(Int.init)
        state = j["state"]?.stringValue
        reason = j["reason"]?.stringValue
        waitedSeconds = j["waited_s"]?.doubleValue
        if let e = j["environment"], !e.isNull {
            environmentPackages = (e["packages"]?.arrayValue ?? []).compactMap(\.stringValue)
            environmentID = e["id"]?.stringValue
            buildingSeconds = e["building_for_s"]?.intValue.map(Int.init)
        }
    }

    public var json: JSONValue {
        var out: [String: JSONValue] = [:]
        if let pool { out["pool"] = .string(pool) }
        if let paused { out["paused"] = .string(paused) }
        if let jobID { out["job_id"] = .int(Int64(jobID)) }
        if let state { out["state"] = .string(state) }
        if let reason { out["reason"] = .string(reason) }
        if let waitedSeconds { out["waited_s"] = .double(waitedSeconds) }
        if let environmentPackages {
            var e: [String: JSONValue] = ["state": "building", "packages": .array(environmentPackages.map(JSONValue.string))]
            if let environmentID { e["id"] = .string(environmentID) }
            if let buildingSeconds { e["building_for_s"] = .int(Int64(buildingSeconds)) }
            out["environment"] = .object(e)
        }
        return .object(out)
    }

    /// In words, as `dlhub run` shows it while it waits (`status` is the task's).
    public func describe(status: String) -> String {
        if let environmentPackages {
            return "building the servable's Python environment (\(environmentPackages.joined(separator: " ")))"
        }
        if let paused { return "pool \(pool ?? "") is paused: \(paused)" }
        if let jobID {
            return state == "RUNNING"
                ? "pilot job \(jobID) is running; task \(status)"
                : "pilot job \(jobID) is \(state ?? "?") (\(reason ?? "")) in pool \(pool ?? "")"
        }
        if state == "SUBMITTING" { return "submitting a pilot job to pool \(pool ?? "")" }
        return ""
    }
}
