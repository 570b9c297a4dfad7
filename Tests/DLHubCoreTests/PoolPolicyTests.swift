import DLHubCore
import Testing

@Suite struct PoolPolicyTests {
    var pool: PoolConfiguration = {
        var p = PoolConfiguration(name: "cpu")
        p.minPilots = 0
        p.maxPilots = 2
        p.walltimeMinutes = 60
        p.idleTimeoutSeconds = 300
        return p
    }()
    let now: Int64 = 1_000_000

    func pilot(
        _ id: UInt32, _ state: JobState = .running, end: Int64 = 1_003_000, connected: Bool = true, busy: Int = 0,
        idleSince: Int64 = 1_000_000, replaced: Bool = false, draining: Bool = false
    ) -> PoolPolicy.Pilot {
        PoolPolicy.Pilot(
            jobID: id, state: state, endTime: end, connected: connected, draining: draining, busy: busy, slots: 4, idleSince: idleSince,
            replaced: replaced)
    }

    @Test func queuedWorkWithNoPilotSubmitsOne() {
        let actions = PoolPolicy.actions(pool: pool, snapshot: .init(now: now, pilots: [], queuedItems: 1))
        #expect(actions.count == 1)
        if case .submit = actions.first {} else { Issue.record("expected a submit, got \(actions)") }
    }

    // MARK: queue-wait hiding

    func submits(_ actions: [PoolPolicy.Action]) -> Int {
        actions.filter { if case .submit = $0 { return true } else { return false } }.count
    }

    @Test func busyPilotsWithAQueueWaitGetTheNextPilotQueuedAhead() {
        // 3 of 4 slots busy, nothing queued yet, jobs seen to wait 120 s: the next pilot queues now.
        let busy = [pilot(1, busy: 3)]
        let ahead = PoolPolicy.actions(pool: pool, snapshot: .init(now: now, pilots: busy, queuedItems: 0, queueWait: 120))
        #expect(submits(ahead) == 1, "\(ahead)")
        // No queue wait (pilots start at once): submitting on demand is enough.
        #expect(submits(PoolPolicy.actions(pool: pool, snapshot: .init(now: now, pilots: busy, queuedItems: 0, queueWait: 0))) == 0)
        // Not busy enough.
        #expect(
            submits(PoolPolicy.actions(pool: pool, snapshot: .init(now: now, pilots: [pilot(1, busy: 1)], queuedItems: 0, queueWait: 120)))
                == 0)
        // One already waiting in the queue: the budget (max_queued_ahead = 1) is used.
        let waiting = busy + [pilot(2, .pending, end: 0, connected: false)]
        #expect(submits(PoolPolicy.actions(pool: pool, snapshot: .init(now: now, pilots: waiting, queuedItems: 0, queueWait: 120))) == 0)
        // Turned off.
        var off = pool
        off.maxQueuedAhead = 0
        #expect(submits(PoolPolicy.actions(pool: off, snapshot: .init(now: now, pilots: busy, queuedItems: 0, queueWait: 120))) == 0)
        // Never beyond max_pilots.
        var one = pool
        one.maxPilots = 1
        #expect(submits(PoolPolicy.actions(pool: one, snapshot: .init(now: now, pilots: busy, queuedItems: 0, queueWait: 120))) == 0)
    }

    @Test func aReplacementIsSubmittedEarlyEnoughToOutwaitTheQueue() {
        // Walltime 60 min: without a queue wait the replacement goes 10 min before the end.
        #expect(PoolPolicy.replacementLead(walltimeMinutes: 60) == 600)
        // Jobs wait 20 min in the queue: drain lead 300 s + 1.5 x 1200 s + 30 s.
        #expect(PoolPolicy.replacementLead(walltimeMinutes: 60, queueWait: 1200) == 300 + 1800 + 30)
        // Never more than the walltime.
        #expect(PoolPolicy.replacementLead(walltimeMinutes: 10, queueWait: 3600) == 600)
        // 25 min left on a busy pilot: replaced now with a 20 min queue wait, not yet without one.
        let p = pilot(1, end: now + 1500, busy: 1)
        let withWait = PoolPolicy.actions(pool: pool, snapshot: .init(now: now, pilots: [p], queuedItems: 0, queueWait: 1200))
        #expect(withWait.contains(.submitReplacement(replacing: 1)), "\(withWait)")
        let without = PoolPolicy.actions(pool: pool, snapshot: .init(now: now, pilots: [p], queuedItems: 0, queueWait: 0))
        #expect(!without.contains(.submitReplacement(replacing: 1)))
    }

    @Test func nothingQueuedNothingSubmitted() {
        #expect(PoolPolicy.actions(pool: pool, snapshot: .init(now: now, pilots: [], queuedItems: 0)).isEmpty)
    }

    @Test func aPendingPilotIsNotDuplicated() {
        let actions = PoolPolicy.actions(
            pool: pool, snapshot: .init(now: now, pilots: [pilot(1, .pending, end: 0, connected: false)], queuedItems: 5000))
        #expect(actions.isEmpty)
    }

    @Test func heavyQueueAddsAPilotButNeverBeyondMax() {
        let one = PoolPolicy.actions(pool: pool, snapshot: .init(now: now, pilots: [pilot(1, busy: 4)], queuedItems: 5000))
        #expect(one.count == 1)
        let atMax = PoolPolicy.actions(
            pool: pool, snapshot: .init(now: now, pilots: [pilot(1, busy: 4), pilot(2, busy: 4)], queuedItems: 50_000))
        #expect(atMax.isEmpty)
    }

    @Test func minimumIsKeptWarm() {
        var p = pool
        p.minPilots = 1
        let actions = PoolPolicy.actions(pool: p, snapshot: .init(now: now, pilots: [], queuedItems: 0))
        #expect(actions.count == 1)
    }

    @Test func walltimeEndingIsReplacedEarlyThenDrained() {
        // 60-minute pilots: replacement 600 s before the end, drain 300 s before.
        let early = PoolPolicy.actions(pool: pool, snapshot: .init(now: now, pilots: [pilot(1, end: now + 500, busy: 1)], queuedItems: 3))
        #expect(early == [.submitReplacement(replacing: 1)])
        let late = PoolPolicy.actions(
            pool: pool,
            snapshot: .init(
                now: now, pilots: [pilot(1, end: now + 200, busy: 1, replaced: true), pilot(2, .pending, end: 0, connected: false)],
                queuedItems: 3))
        #expect(late.contains(.drain(1, reason: "walltime ends in 200 s")))
        #expect(
            !late.contains {
                if case .submit = $0 { return true }; if case .submitReplacement = $0 { return true }; return false
            })
    }

    @Test func recentlyBusyPilotIsReplacedEvenBetweenRequests() {
        // Steady light traffic: at this instant nothing is queued or running, but it was busy 2 s ago.
        let actions = PoolPolicy.actions(
            pool: pool, snapshot: .init(now: now, pilots: [pilot(1, end: now + 500, idleSince: now - 2)], queuedItems: 0))
        #expect(actions == [.submitReplacement(replacing: 1)])
        // Long idle and near its end: let it go without a successor.
        let idle = PoolPolicy.actions(
            pool: pool, snapshot: .init(now: now, pilots: [pilot(1, end: now + 500, idleSince: now - 400)], queuedItems: 0))
        #expect(idle.isEmpty)
    }

    @Test func idlePilotsBeyondMinimumAreDrained() {
        var p = pool
        p.minPilots = 1
        let actions = PoolPolicy.actions(
            pool: p, snapshot: .init(now: now, pilots: [pilot(1, idleSince: now - 400), pilot(2, idleSince: now - 350)], queuedItems: 0))
        #expect(actions == [.drain(1, reason: "idle for 400 s")])
        let recent = PoolPolicy.actions(
            pool: p, snapshot: .init(now: now, pilots: [pilot(1, idleSince: now - 10), pilot(2, idleSince: now - 10)], queuedItems: 0))
        #expect(recent.isEmpty)
    }

    @Test func pausedPoolSubmitsNothing() {
        #expect(PoolPolicy.actions(pool: pool, snapshot: .init(now: now, pilots: [], queuedItems: 10, paused: true)).isEmpty)
    }

    @Test func placementFollowsDeclaredResources() throws {
        var cpu = PoolConfiguration(name: "cpu")
        cpu.memoryPerNodeMB = 4000
        var big = PoolConfiguration(name: "bigmem")
        big.partition = "bigmem"
        big.memoryPerNodeMB = 64000
        var r = ServableMetadata.Resources()
        #expect(try Placement.pool(for: r, in: [cpu, big]).get().name == "cpu")
        r.memoryMB = 32 * 1024
        #expect(try Placement.pool(for: r, in: [cpu, big]).get().name == "bigmem")
        r.memoryMB = 128 * 1024
        #expect(throws: DLHubError.self) { try Placement.pool(for: r, in: [cpu, big]).get() }
        var named = ServableMetadata.Resources()
        named.pool = "bigmem"
        #expect(try Placement.pool(for: named, in: [cpu, big]).get().name == "bigmem")
    }
}
