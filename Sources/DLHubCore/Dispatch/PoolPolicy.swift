/// The pilot lifecycle policy for one pool, as a pure function of what the manager observes.
///
/// The pilot manager gathers a `PoolSnapshot` (its jobs as Slurm reports them, which have
/// connected, how busy they are, how much work is queued) and carries out the actions this
/// returns: submit ahead of demand, keep `min` warm, replace pilots before their walltime ends,
/// drain idle ones, forget finished ones. Unit tests drive it with no Slurm and no sockets.
public enum PoolPolicy {
    public struct Pilot: Sendable, Hashable {
        public var jobID: UInt32
        public var state: JobState
        /// Unix time the walltime ends (0 when not known yet, e.g. still pending).
        public var endTime: Int64
        public var connected: Bool
        public var draining: Bool
        /// Batches it is running.
        public var busy: Int
        public var slots: Int
        /// Unix time it last had work (its connection time if it never had any).
        public var idleSince: Int64
        /// Whether a replacement was already submitted for it.
        public var replaced: Bool

        public init(
            jobID: UInt32, state: JobState, endTime: Int64, connected: Bool, draining: Bool, busy: Int, slots: Int, idleSince: Int64,
            replaced: Bool
        ) {
            self.jobID = jobID
            self.state = state
            self.endTime = endTime
            self.connected = connected
            self.draining = draining
            self.busy = busy
            self.slots = slots
            self.idleSince = idleSince
            self.replaced = replaced
        }
    }

    public struct Snapshot: Sendable {
        public var now: Int64
        public var pilots: [Pilot]
        /// Items waiting for this pool.
        public var queuedItems: Int
        public var paused: Bool
        /// How long this pool's pilot jobs have been seen to wait in Slurm's queue (seconds,
        /// learned from their submit and start times; 0 until one has started).
        public var queueWait: Int64
        public init(now: Int64, pilots: [Pilot], queuedItems: Int, paused: Bool = false, queueWait: Int64 = 0) {
            self.now = now
            self.pilots = pilots
            self.queuedItems = queuedItems
            self.paused = paused
            self.queueWait = queueWait
        }
    }

    public enum Action: Sendable, Hashable {
        case submit(reason: String)
        /// `replacing` is the job whose walltime is ending.
        case submitReplacement(replacing: UInt32)
        case drain(UInt32, reason: String)
    }

    /// Seconds before the walltime end at which a replacement is submitted: early enough that,
    /// after the queue wait this pool's jobs see (with half again as margin, plus 30 s), it is
    /// running before its predecessor starts draining. Never more than the walltime.
    public static func replacementLead(walltimeMinutes: Int, queueWait: Int64 = 0) -> Int64 {
        let base = Int64(min(600, max(30, walltimeMinutes * 60 / 2)))
        let needed = drainLead(walltimeMinutes: walltimeMinutes) + queueWait * 3 / 2 + 30
        return min(Int64(walltimeMinutes * 60), max(base, needed))
    }

    /// Busy share of a pool's slots at which, when its jobs wait in the queue, the next pilot is
    /// submitted ahead of demand.
    public static let busyShareBeforeQueueingAhead = 0.75
    /// A learned queue wait below this is treated as none: no pilot is queued ahead for it.
    public static let queueWaitWorthQueueingAhead: Int64 = 5

    /// Seconds before the walltime end at which a pilot is drained (also its `--signal` time).
    public static func drainLead(walltimeMinutes: Int) -> Int64 {
        Int64(min(300, max(15, walltimeMinutes * 60 / 4)))
    }

    /// Queued items per free slot beyond which one more pilot is worth its queue wait.
    public static let itemsPerSlotBeforeScaling = 16

    public static func actions(pool: PoolConfiguration, snapshot s: Snapshot) -> [Action] {
        var actions: [Action] = []
        let replaceLead = replacementLead(walltimeMinutes: pool.walltimeMinutes, queueWait: s.queueWait)
        let drainLead = drainLead(walltimeMinutes: pool.walltimeMinutes)
        let alive = s.pilots.filter { !$0.state.isFinished }
        // Pilots that will still be serving a while from now: not draining, not near their end.
        let lasting = alive.filter { p in
            !p.draining && p.state != .completing && !(p.endTime > 0 && p.endTime - s.now <= replaceLead)
        }

        // Walltime: replace early, drain before the end.
        var submitted = 0
        for p in alive where p.state == .running && p.endTime > 0 {
            let left = p.endTime - s.now
            if left <= replaceLead, !p.replaced, !s.paused, alive.count <= pool.maxPilots,
                s.queuedItems > 0 || p.busy > 0 || s.now - p.idleSince < Int64(pool.idleTimeoutSeconds) || lasting.count < pool.minPilots
            {
                actions.append(.submitReplacement(replacing: p.jobID))
                submitted += 1
            }
            if left <= drainLead, !p.draining {
                actions.append(.drain(p.jobID, reason: "walltime ends in \(max(0, left)) s"))
            }
        }

        guard !s.paused else { return actions }
        // Pilots that count against `max`: those not on their way out, plus what this round submits.
        var total = alive.filter { !$0.draining && !$0.replaced }.count + submitted
        // Pilots that will be serving a while from now.
        var serving = lasting.count + submitted
        while serving < pool.minPilots, total < pool.maxPilots {
            actions.append(.submit(reason: "keeping \(pool.minPilots) pilot(s) warm"))
            serving += 1
            total += 1
        }
        // Demand: nothing lasting to serve queued work, or more work than the pilots' slots absorb.
        let pending = lasting.filter { $0.state == .pending || !$0.connected }.count
        let slots = lasting.filter { $0.connected }.reduce(0) { $0 + $1.slots }
        if s.queuedItems > 0, total < pool.maxPilots {
            if serving == 0 {
                actions.append(.submit(reason: "\(s.queuedItems) item(s) queued and no pilot"))
            } else if pending == 0, s.queuedItems > max(1, slots) * itemsPerSlotBeforeScaling {
                actions.append(.submit(reason: "\(s.queuedItems) item(s) queued beyond what \(serving) pilot(s) absorb"))
                total += 1
            }
        }
        // Queue-wait hiding: when this pool's jobs wait in the queue and its pilots are nearly
        // full, the next pilot waits in the queue now, not after demand has outgrown them.
        let busy = lasting.filter { $0.connected }.reduce(0) { $0 + $1.busy }
        if s.queueWait >= queueWaitWorthQueueingAhead, pending < pool.maxQueuedAhead, total < pool.maxPilots, slots > 0,
            Double(busy) >= Double(slots) * busyShareBeforeQueueingAhead,
            !actions.contains(where: { if case .submit = $0 { return true } else { return false } })
        {
            actions.append(
                .submit(
                    reason: "pilots \(busy * 100 / slots)% busy and jobs wait ~\(s.queueWait) s in the queue: the next one queues ahead"))
        }
        // Idle pilots beyond the minimum are released.
        var keep = lasting.count
        for p in lasting.sorted(by: { $0.idleSince < $1.idleSince }) where p.connected && p.busy == 0 && s.queuedItems == 0 {
            guard keep > pool.minPilots else { break }
            if s.now - p.idleSince >= Int64(pool.idleTimeoutSeconds) {
                actions.append(.drain(p.jobID, reason: "idle for \(s.now - p.idleSince) s"))
                keep -= 1
            }
        }
        return actions
    }
}
