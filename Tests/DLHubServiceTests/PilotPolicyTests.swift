import DLHubCore
import Foundation
import PropertyBased
import Testing

@testable import DLHubService

/// What a pilot manager tick decides (`PilotPlan`), from made-up observations: no Slurm, no
/// dispatcher, no clock. A failing property test reports its seed; `.fixedSeed(...)` on the
/// test replays it.
@Suite struct PilotPolicyTests {
    typealias Job = PilotManager.TrackedJob
    let t0 = Date(timeIntervalSince1970: 1_000_000)

    func job(_ id: UInt32, pool: String = "warm", submitted: Date? = nil, info: JobInfo? = nil, previous: Bool = false) -> Job {
        var job = Job(
            id: id, pool: pool, submittedAt: submitted ?? t0, reason: "submitted", secret: "s", fromPreviousRun: previous)
        job.info = info
        return job
    }

    func info(_ id: UInt32, _ state: JobState, submit: Int64 = 0, start: Int64 = 0, end: Int64 = 0, reason: String = "None") -> JobInfo {
        JobInfo(
            id: id, name: "dlhub-pilot-warm", state: state, reason: reason, nodes: "", partition: "", submitTime: submit,
            startTime: start, endTime: end, timeLimitMinutes: nil, exitCode: 0)
    }

    func seen(
        _ slurm: [JobInfo]?, now: Date? = nil, connected: Set<UInt32> = [], pools: Set<String> = ["warm"], grace: Int = 60
    ) -> PilotPlan.Observation {
        PilotPlan.Observation(
            now: now ?? t0, slurm: slurm.map { Dictionary(uniqueKeysWithValues: $0.map { ($0.id, $0) }) }, connected: connected,
            pools: pools, reconnectGraceSeconds: grace)
    }

    func table(_ jobs: Job...) -> [UInt32: Job] { Dictionary(uniqueKeysWithValues: jobs.map { ($0.id, $0) }) }

    // MARK: The job round

    @Test func aRestartAdoptsRunningJobsAndCancelsPendingOnesAndThoseOfPoolsNoLongerConfigured() {
        let previous = table(
            job(1, previous: true), job(2, previous: true), job(3, pool: "gone", previous: true), job(4, previous: true),
            job(5, previous: true))
        let slurm = [info(1, .running, submit: 10, start: 20), info(2, .pending), info(3, .running), info(4, .completed)]
        let round = PilotPlan.jobs(previous, seen: seen(slurm))
        #expect(round.steps.contains(.adopt(1, pool: "warm")))
        #expect(round.steps.contains { if case .cancelPrevious(2, let why) = $0 { why.hasPrefix("pending when") } else { false } })
        #expect(round.steps.contains(.cancelPrevious(3, why: "its pool gone is no longer configured: cancelled")))
        #expect(round.steps.count == 3, "a job that ended or vanished while the service was down has nothing to cancel: \(round.steps)")
        #expect(round.ended)
        let adopted = round.jobs[1]
        #expect(adopted?.endedAt == nil && adopted?.adoptedAt == t0)
        #expect(adopted?.reason == "adopted after a service restart (submitted: submitted)")
        #expect(adopted?.info?.state == .running, "an adopted job is watched from the same tick on")
        #expect(round.queueWaits.isEmpty, "the queue wait of a job of the previous run is not learned again")
        for id: UInt32 in 2...5 { #expect(round.jobs[id]?.endedAt == t0, "job \(id)") }
        #expect(!round.jobs.values.contains { $0.fromPreviousRun })
    }

    @Test func anAdoptedJobIsSaidAdoptedOnceHoweverManyRestartsItLives() {
        var twice = job(1, previous: true)
        twice.reason = "adopted after a service restart (submitted: keeping 1 pilot(s) warm)"
        let round = PilotPlan.jobs(table(twice), seen: seen([info(1, .running)]))
        #expect(round.jobs[1]?.reason == twice.reason)
    }

    @Test func withSlurmSilentNoJobEndsButAnAdoptedJobWithoutItsPilotIsStillGivenUp() {
        var adopted = job(1)
        adopted.adoptedAt = t0
        var back = job(2)
        back.adoptedAt = t0
        let waiting = job(3, previous: true)
        let jobs = table(adopted, back, waiting, job(4))
        // 60 s grace + 30 s margin: not yet at 90 s, given up after.
        #expect(PilotPlan.jobs(jobs, seen: seen(nil, now: t0 + 90, connected: [2])).steps.isEmpty)
        let round = PilotPlan.jobs(jobs, seen: seen(nil, now: t0 + 91, connected: [2]))
        #expect(round.steps == [.abandon(1)], "job 2's pilot is back")
        #expect(round.jobs[1]?.drainRequested == true && round.jobs[1]?.adoptedAt == nil)
        #expect(round.jobs[1]?.endedAt == nil, "it ends when Slurm says so")
        #expect(!round.ended && round.jobs[3]?.fromPreviousRun == true && round.jobs[4]?.endedAt == nil)
    }

    @Test func aJobRequeuedAfterItRanIsReplacedOnePendingFromTheStartIsNot() {
        let round = PilotPlan.jobs(
            table(job(1, info: info(1, .running)), job(2, info: info(2, .pending))),
            seen: seen([info(1, .pending, reason: "BeginTime"), info(2, .pending)]))
        #expect(round.steps == [.requeued(1)])
        #expect(round.jobs[1]?.reason == "requeued by Slurm (BeginTime); cancelled and replaced")
        #expect(round.jobs[2]?.endedAt == nil)
    }

    @Test func endedAndVanishedJobsAreToldAndForgottenTwoMinutesLater() {
        let done = info(1, .timeout)
        let round = PilotPlan.jobs(table(job(1, info: info(1, .running)), job(2), job(3)), seen: seen([done, info(3, .pending)]))
        #expect(Set(round.steps) == Set([.finished(1, done), .vanished(2)]))
        #expect(round.jobs[2]?.reason == "vanished from the controller")
        let later = PilotPlan.jobs(round.jobs, seen: seen([info(3, .pending)], now: t0 + 119))
        #expect(later.steps.isEmpty && !later.ended && later.jobs.count == 3, "an ended job is told once, and shown a while")
        #expect(PilotPlan.jobs(round.jobs, seen: seen([info(3, .pending)], now: t0 + 120)).jobs.keys.sorted() == [3])
    }

    @Test func aJobsQueueWaitIsLearnedOnceFromSlurmsTimes() {
        let round = PilotPlan.jobs(table(job(1), job(2)), seen: seen([info(1, .running, submit: 1_000, start: 1_120), info(2, .pending)]))
        #expect(round.queueWaits.map { $0.seconds } == [120] && round.queueWaits.map { $0.pool } == ["warm"])
        #expect(
            PilotPlan.jobs(round.jobs, seen: seen([info(1, .completed, submit: 1_000, start: 1_500), info(2, .pending)])).queueWaits.isEmpty
        )
        // A start before the submit (clock skew) is no wait, not a negative one.
        #expect(
            PilotPlan.jobs(table(job(1)), seen: seen([info(1, .running, submit: 1_000, start: 900)])).queueWaits.map { $0.seconds } == [0])
    }

    // MARK: The pool round

    var pool: PoolConfiguration {
        var pool = PoolConfiguration(name: "warm")
        pool.minPilots = 1
        pool.maxPilots = 2
        pool.walltimeMinutes = 60
        pool.idleTimeoutSeconds = 300
        return pool
    }

    func session(_ id: UInt32, busy: Int = 0, slots: Int = 4, draining: Bool = false, idleSince: Date? = nil) -> PilotPlan.Session {
        PilotPlan.Session(jobID: id, busy: busy, slots: slots, draining: draining, idleSince: idleSince ?? t0)
    }

    func poolSeen(
        _ jobs: [Job], sessions: [PilotPlan.Session] = [], queued: Int = 0, now: Date? = nil, retryAt: Date = .distantPast,
        learned: Double? = nil
    ) -> PilotPlan.PoolObservation {
        PilotPlan.PoolObservation(
            now: now ?? t0, jobs: jobs, sessions: Dictionary(grouping: sessions, by: \.jobID), queuedItems: queued, retryAt: retryAt,
            learnedQueueWait: learned)
    }

    @Test func aPoolBackingOffSubmitsNothingUntilItsRetryTime() {
        #expect(PilotPlan.pool(pool, seen: poolSeen([], retryAt: t0 + 1)).isEmpty)
        #expect(PilotPlan.pool(pool, seen: poolSeen([], retryAt: t0)) == [.submit(reason: "keeping 1 pilot(s) warm")])
    }

    @Test func aReplacementNamesTheJobWhoseWalltimeEnds() {
        let ending = job(1, info: info(1, .running, end: Int64(t0.timeIntervalSince1970) + 200))
        let steps = PilotPlan.pool(pool, seen: poolSeen([ending], sessions: [session(1, busy: 1)]))
        #expect(steps.contains(.replace(1, reason: "replacing job 1 before its walltime ends")), "\(steps)")
    }

    @Test func aDrainedJobWithNoPilotConnectedIsCancelledOneWithAPilotIsLeftToDrain() {
        let end = Int64(t0.timeIntervalSince1970) + 10
        let jobs = [job(1, info: info(1, .running, end: end)), job(2, info: info(2, .running, end: end))]
        let steps = PilotPlan.pool(pool, seen: poolSeen(jobs, sessions: [session(2)]))
        #expect(steps.contains(.drain(1, reason: "walltime ends in 10 s", cancel: true)), "\(steps)")
        #expect(steps.contains(.drain(2, reason: "walltime ends in 10 s", cancel: false)), "\(steps)")
    }

    @Test func aPilotIsSeenAsItsSessionsTogether() {
        let jobs = [
            job(1, info: info(1, .running, end: 2_000_000)), job(2, submitted: t0 - 50, info: info(2, .pending, end: 2_000_000)),
        ]
        let sessions = [
            session(1, busy: 1, slots: 2, idleSince: t0 - 30), session(1, busy: 2, slots: 3, draining: true, idleSince: t0 - 10),
        ]
        let snapshot = PilotPlan.snapshot(poolSeen(jobs, sessions: sessions, retryAt: t0 + 1))
        let one = snapshot.pilots[0]
        #expect(one.connected && one.busy == 3 && one.slots == 5 && one.draining && one.endTime == 2_000_000)
        #expect(one.idleSince == Int64(t0.timeIntervalSince1970) - 10, "idle since the latest of its pilots")
        let two = snapshot.pilots[1]
        #expect(!two.connected && two.slots == 1 && two.endTime == 0, "a pending job has no walltime end yet")
        #expect(two.idleSince == Int64(t0.timeIntervalSince1970) - 50, "idle since it was submitted")
        #expect(snapshot.paused && snapshot.queueWait == 50)
    }

    @Test func theQueueWaitGrowsWhileAJobPendsLongerThanLearned() {
        let pending = job(1, submitted: t0 - 400)
        #expect(PilotPlan.queueWait(learned: 120, jobs: [pending], now: t0) == 400)
        #expect(PilotPlan.queueWait(learned: 600, jobs: [pending], now: t0) == 600)
        #expect(PilotPlan.queueWait(learned: nil, jobs: [job(1, submitted: t0 - 400, info: info(1, .running))], now: t0) == 0)
    }

    // MARK: Generated cases

    /// Random choices drawn in turn from a generated list.
    struct Draws {
        let values: [Int]
        var next = 0
        mutating func callAsFunction(_ range: ClosedRange<Int>) -> Int {
            defer { next += 1 }
            return range.lowerBound + values[next % values.count] % range.count
        }
        mutating func chance(_ percent: Int) -> Bool { self(0...99) < percent }
    }

    /// Generated pools (limits, jobs in every live state, sessions, queued work, back-off): the
    /// steps keep the limits `PoolPolicy` promises.
    @Test func generatedPoolsKeepTheirLimits() async {
        var reached = Set<String>()
        var runs = 0
        let cases = 2_000
        await propertyCheck(count: cases, input: Gen.int(in: 0...1_000_000).array(of: 300...300)) { values in
            runs += 1
            var d = Draws(values: values)
            var pool = PoolConfiguration(name: "warm")
            pool.minPilots = d(0...3)
            pool.maxPilots = pool.minPilots + d(0...3)
            pool.maxQueuedAhead = d(0...2)
            pool.walltimeMinutes = d(1...120)
            pool.idleTimeoutSeconds = d(0...600)
            let now = t0
            var jobs: [Job] = []
            var sessions: [PilotPlan.Session] = []
            for id in UInt32(1)...UInt32(1 + d(0...6)) {
                let state: JobState? = [nil, .pending, .running, .running, .completing, .suspended][d(0...5)]
                let end = d.chance(10) ? 0 : Int64(now.timeIntervalSince1970) + Int64(d(-30...7200))
                var j = job(id, submitted: now - Double(d(0...3000)), info: state.map { info(id, $0, end: end) })
                j.drainRequested = d.chance(15)
                j.replaced = d.chance(15)
                jobs.append(j)
                if d.chance(state == .running ? 75 : 10) {
                    for _ in 1...d(1...2) {
                        sessions.append(
                            session(id, busy: d(0...4), slots: d(1...4), draining: d.chance(10), idleSince: now - Double(d(0...900))))
                    }
                }
            }
            let seen = poolSeen(
                jobs, sessions: sessions, queued: d.chance(50) ? 0 : d(1...200),
                retryAt: d.chance(25) ? now + Double(d(1...300)) : now - Double(d(0...300)),
                learned: d.chance(30) ? nil : Double(d(0...2000)))
            let steps = PilotPlan.pool(pool, seen: seen)
            check(steps, pool: pool, seen: seen)
            for step in steps {
                switch step {
                case .submit: reached.insert(seen.retryAt > now ? "submit while backing off" : "submit")
                case .replace: reached.insert("replace")
                case .drain(_, let reason, let cancel): reached.insert("drain \(reason.prefix(4)) cancel \(cancel)")
                }
            }
        }
        // The generator reaches every kind of step (checked only when every case ran: not on a
        // failure, which stops the run, nor on a replayed seed).
        if runs == cases {
            #expect(
                reached == ["submit", "replace", "drain wall cancel true", "drain wall cancel false", "drain idle cancel false"],
                "\(reached)")
        }
    }

    func check(_ steps: [PilotPlan.PoolStep], pool: PoolConfiguration, seen: PilotPlan.PoolObservation) {
        let now = Int64(seen.now.timeIntervalSince1970)
        let byID = Dictionary(uniqueKeysWithValues: seen.jobs.map { ($0.id, $0) })
        func state(_ j: Job) -> JobState { j.info?.state ?? .pending }
        func end(_ j: Job) -> Int64 { state(j) == .running ? j.info?.endTime ?? 0 : 0 }
        func connected(_ j: Job) -> Bool { seen.sessions[j.id] != nil }
        func draining(_ j: Job) -> Bool { j.drainRequested || (seen.sessions[j.id] ?? []).contains { $0.draining } }
        var submits = 0
        var replaced: [UInt32] = []
        var drains: [(id: UInt32, cancel: Bool)] = []
        for step in steps {
            switch step {
            case .submit: submits += 1
            case .replace(let id, _): replaced.append(id)
            case .drain(let id, _, let cancel): drains.append((id, cancel))
            }
        }
        let context =
            "\(pool) \(seen.jobs.map { ($0.id, state($0), end($0) - now, $0.drainRequested, $0.replaced) }) \(seen.sessions) → \(steps)"

        // Never submits while backing off.
        if seen.retryAt > seen.now { #expect(submits == 0 && replaced.isEmpty, "\(context)") }
        // Pilots that count against max (not draining, not replaced), replacements, and fresh submissions never exceed it.
        let counted = seen.jobs.filter { !draining($0) && !$0.replaced }.count
        #expect(submits <= max(0, pool.maxPilots - counted - replaced.count), "\(context)")
        // A replacement only for a running job whose end is known, once, and not with the pool over max.
        #expect(Set(replaced).count == replaced.count, "\(context)")
        for id in replaced {
            let j = byID[id]
            #expect(j.map { state($0) == .running && end($0) > 0 && !$0.replaced } == true, "\(context)")
        }
        if !replaced.isEmpty { #expect(seen.jobs.count <= pool.maxPilots, "\(context)") }
        // Drains: of the pool's jobs not already draining, each once; cancelled exactly when no pilot is connected.
        #expect(Set(drains.map(\.id)).count == drains.count, "\(context)")
        for (id, cancel) in drains {
            let j = byID[id]
            #expect(j.map { !draining($0) && cancel == !connected($0) } == true, "\(context)")
        }
        // Pilots that will still serve a while from now.
        let waited = seen.jobs.filter { state($0) == .pending }.map { Double(now) - $0.submittedAt.timeIntervalSince1970 }.max() ?? 0
        let queueWait = Int64(max(seen.learnedQueueWait ?? 0, waited))
        let replaceLead = PoolPolicy.replacementLead(walltimeMinutes: pool.walltimeMinutes, queueWait: queueWait)
        let drainLead = PoolPolicy.drainLead(walltimeMinutes: pool.walltimeMinutes)
        let lasting = seen.jobs.filter { !draining($0) && state($0) != .completing && !(end($0) > 0 && end($0) - now <= replaceLead) }
        let waiting = lasting.filter { state($0) == .pending || !connected($0) }.count
        // The minimum is kept warm while max allows.
        if seen.retryAt <= seen.now, lasting.count + replaced.count < pool.minPilots, counted + replaced.count < pool.maxPilots {
            #expect(submits > 0, "\(context)")
        }
        // With the minimum there, pilots still waiting in the queue (up to max_queued_ahead) hold any more back.
        if lasting.count >= max(1, pool.minPilots), waiting >= max(1, pool.maxQueuedAhead) { #expect(submits == 0, "\(context)") }
        // Idle drains: only of idle connected pilots past the timeout with nothing queued, never below the minimum.
        let idle = drains.compactMap { byID[$0.id] }.filter { !(state($0) == .running && end($0) > 0 && end($0) - now <= drainLead) }
        for j in idle {
            let s = seen.sessions[j.id] ?? []
            let since = Int64((s.map(\.idleSince).max() ?? j.submittedAt).timeIntervalSince1970)
            #expect(
                seen.queuedItems == 0 && !s.isEmpty && s.allSatisfy { $0.busy == 0 } && now - since >= Int64(pool.idleTimeoutSeconds),
                "\(context)")
        }
        if !idle.isEmpty { #expect(lasting.count - idle.count >= pool.minPilots, "\(context)") }
    }

    /// Generated histories: jobs of the previous run and of this one, Slurm answering with any
    /// state, forgetting jobs, or not answering at all, pilots connecting and leaving, round after
    /// round. A job ends only on Slurm's word, once; the dispatcher hears of each end of a job of
    /// this run once; a queue wait is learned once per job; ended jobs are shown two minutes.
    @Test func generatedHistoriesEndEachJobOnceAndOnlyOnSlurmsWord() async {
        var reached = Set<String>()
        var runs = 0
        let cases = 400
        await propertyCheck(count: cases, input: Gen.int(in: 0...1_000_000).array(of: 1000...1000)) { values in
            runs += 1
            var d = Draws(values: values)
            let grace = d(0...120)
            var now = t0
            var jobs: [UInt32: Job] = [:]
            var nextID: UInt32 = 1
            for _ in 0..<d(0...5) {
                jobs[nextID] = job(nextID, pool: ["warm", "cold", "gone"][d(0...2)], submitted: now - 600, previous: true)
                nextID += 1
            }
            var told = Set<UInt32>()
            let common: [JobState] = [.pending, .running, .running]
            for _ in 0..<d(1...12) {
                for _ in 0..<d(0...2) {
                    jobs[nextID] = job(nextID, pool: ["warm", "cold"][d(0...1)], submitted: now)
                    nextID += 1
                }
                now += Double(d(1...100))
                let alive = jobs.values.filter { $0.endedAt == nil }.map(\.id).sorted()
                var slurm: [JobInfo]?
                if !d.chance(15) {
                    slurm = alive.compactMap { id in
                        guard !d.chance(8) else { return nil }
                        let state = d.chance(60) ? common[d(0...2)] : JobState.allCases[d(0...JobState.allCases.count - 1)]
                        let started = state != .pending && d.chance(80)
                        return info(id, state, submit: d.chance(90) ? 1_000 : 0, start: started ? 1_000 + Int64(d(-10...500)) : 0)
                    }
                }
                let connected = Set(alive.filter { _ in d.chance(40) })
                let observed = seen(slurm, now: now, connected: connected, pools: ["warm", "cold"], grace: grace)
                let round = PilotPlan.jobs(jobs, seen: observed)
                check(round, from: jobs, seen: observed, told: &told)
                for step in round.steps { reached.insert("\(step)".prefix { $0 != "(" }.description) }
                if slurm == nil { reached.insert("no answer") }
                if jobs.count > round.jobs.count { reached.insert("forgotten") }
                jobs = round.jobs
            }
        }
        if runs == cases {
            let kinds: Set = ["adopt", "cancelPrevious", "abandon", "requeued", "finished", "vanished", "no answer", "forgotten"]
            #expect(reached == kinds, "\(reached)")
        }
    }

    func check(_ round: PilotPlan.JobRound, from before: [UInt32: Job], seen: PilotPlan.Observation, told: inout Set<UInt32>) {
        let now = seen.now
        let table = before.values.sorted { $0.id < $1.id }.map {
            "\($0.id) \($0.pool) \($0.fromPreviousRun) \($0.info?.state.rawValue ?? "-")"
        }
        let answer = seen.slurm.map { $0.values.map { "\($0.id) \($0.state.rawValue)" }.sorted() } ?? ["(no answer)"]
        let context = "\(table) \(answer) → \(round.steps)"
        func id(of step: PilotPlan.JobStep) -> UInt32 {
            switch step {
            case .adopt(let id, _), .cancelPrevious(let id, _), .abandon(let id), .requeued(let id), .finished(let id, _),
                .vanished(let id):
                id
            }
        }
        // Steps only for jobs tracked and alive; at most one end each.
        for step in round.steps { #expect(before[id(of: step)]?.endedAt == nil, "\(context)") }
        let ending = round.steps.filter { if case .adopt = $0 { false } else if case .abandon = $0 { false } else { true } }.map(id(of:))
        #expect(Set(ending).count == ending.count, "\(context)")
        #expect(Set(round.jobs.keys).isSubset(of: before.keys), "\(context)")
        // Which jobs end: exactly those Slurm says are gone, or that must not live on.
        var expected = Set<UInt32>()
        if let slurm = seen.slurm {
            for j in before.values where j.endedAt == nil {
                guard let info = slurm[j.id], !info.state.isFinished else {
                    expected.insert(j.id)
                    continue
                }
                if j.fromPreviousRun, info.state != .running || !seen.pools.contains(j.pool) { expected.insert(j.id) }
                if !j.fromPreviousRun, j.info?.state == .running, info.state == .pending { expected.insert(j.id) }
            }
        }
        let ended = Set(before.values.filter { $0.endedAt == nil && round.jobs[$0.id]?.endedAt != nil }.map(\.id))
        #expect(ended == expected, "\(context)")
        #expect(round.ended == !ended.isEmpty, "\(context)")
        for id in ended { #expect(round.jobs[id]?.endedAt == now, "\(context)") }
        if seen.slurm == nil {
            #expect(round.steps.allSatisfy { if case .abandon = $0 { true } else { false } }, "\(context)")
            #expect(round.queueWaits.isEmpty, "\(context)")
        } else {
            #expect(!round.jobs.values.contains { $0.fromPreviousRun }, "\(context)")
        }
        // The dispatcher hears of the end of a job of this run once, never of a job of the previous run.
        for step in round.steps {
            switch step {
            case .requeued(let id), .finished(let id, _), .vanished(let id):
                #expect(before[id]?.fromPreviousRun == false, "\(context)")
                #expect(told.insert(id).inserted, "job \(id) told twice: \(context)")
            default: break
            }
        }
        // A queue wait is learned once per job, and never negative.
        let learned = before.values.filter { !$0.waitLearned && !$0.fromPreviousRun && round.jobs[$0.id]?.waitLearned == true }
        #expect(round.queueWaits.count == learned.count && round.queueWaits.allSatisfy { $0.seconds >= 0 }, "\(context)")
        for (id, j) in before where j.waitLearned { #expect(round.jobs[id].map(\.waitLearned) ?? true, "\(context)") }
        // An adopted job is given up exactly when its pilot has missed the grace period.
        let graceEnd = Double(seen.reconnectGraceSeconds) + 30
        let overdue = before.values.filter {
            $0.endedAt == nil && !seen.connected.contains($0.id) && $0.adoptedAt.map { now.timeIntervalSince($0) > graceEnd } == true
        }
        let abandoned = round.steps.compactMap { step -> UInt32? in if case .abandon(let id) = step { id } else { nil } }
        #expect(Set(abandoned) == Set(overdue.map(\.id)) && abandoned.count == overdue.count, "\(context)")
        for id in abandoned { #expect(round.jobs[id]?.drainRequested == true && round.jobs[id]?.adoptedAt == nil, "\(context)") }
        // Adopted: running jobs of the previous run in a configured pool, waiting for their pilot unless it is back.
        for step in round.steps {
            guard case .adopt(let id, _) = step else { continue }
            #expect(round.jobs[id]?.adoptedAt == (seen.connected.contains(id) ? nil : now), "\(context)")
        }
        // Ended jobs are shown for two minutes, then forgotten.
        for (id, j) in before {
            let gone = j.endedAt.map { now.timeIntervalSince($0) >= 120 } ?? false
            #expect((round.jobs[id] == nil) == gone, "\(context)")
        }
    }
}
