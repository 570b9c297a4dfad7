import DLHubCore
import Foundation
import PropertyBased
import Testing

@testable import DLHubService

/// The table of failed loads: a servable that failed is refused at once until its retry time,
/// the wait doubles with each failure up to the cap, and what clears it clears it.
@Suite struct LoadFailuresTests {
    @Test func aFailedLoadBlocksUntilItsRetryTimeAndTheWaitGrowsWithinItsCap() async {
        // Each step: 0-49 a failure on a session, 50-69 a successful load, 70-79 a rebuild
        // (forget), 80-89 a session leaves, 90-99 time passes; the key is one of three.
        await propertyCheck(count: 300, input: Gen.int(in: 0...99).array(of: 1...200), Gen.int(in: 0...2).array(of: 200...200)) {
            steps, keys in
            var table = LoadFailures()
            var now = Date(timeIntervalSince1970: 1_000_000)
            var attempts: [String: Int] = [:]  // the model
            var retryAt: [String: Date] = [:]
            for (i, step) in steps.enumerated() {
                let key = "k\(keys[i])"
                switch step {
                case 0..<50:
                    let f = table.record(
                        key, digest: "sha256:\(key)", error: "boom \(i)", session: step % 4, jobID: 7, node: "n1", now: now)
                    attempts[key, default: 0] += 1
                    let wait = f.retryAt.timeIntervalSince(now)
                    #expect(f.attempts == attempts[key])
                    #expect(wait >= LoadFailures.firstBackoff && wait <= LoadFailures.maxBackoff)
                    #expect(wait == LoadFailures.backoff(attempts: f.attempts))
                    if f.attempts > 1 {
                        #expect(wait >= LoadFailures.backoff(attempts: f.attempts - 1), "the wait shrank")
                    }
                    #expect(f.tried.contains(step % 4))
                    retryAt[key] = f.retryAt
                case 50..<70:
                    table.loaded(key)
                    attempts[key] = nil
                    retryAt[key] = nil
                case 70..<80:
                    table.forget([key])
                    attempts[key] = nil
                    retryAt[key] = nil
                case 80..<90:
                    table.sessionLeft(step % 4)
                    #expect(!table.triedOn(key, session: step % 4))
                default:
                    now = now.addingTimeInterval(Double(step - 89) * 20)
                }
                for k in ["k0", "k1", "k2"] {
                    let blocked = retryAt[k].map { now < $0 } ?? false
                    #expect((table.blocking(k, now: now) != nil) == blocked, "key \(k) at step \(i)")
                    #expect(table.mayLoad(k, now: now) == !blocked)
                }
            }
        }
    }

    @Test func theMessageNamesTheErrorTheJobAndWhenItIsTriedAgain() {
        var table = LoadFailures()
        let now = Date(timeIntervalSince1970: 2_000_000)
        table.record(
            "k", digest: "sha256:d", error: "ModuleNotFoundError: No module named 'nope'", session: 1, jobID: 42, node: "c1", now: now)
        let failure = table.record(
            "k", digest: "sha256:d", error: "ModuleNotFoundError: No module named 'nope'", session: 2, jobID: 43, node: "c2", now: now)
        let message = LoadFailures.message(failure, now: now)
        #expect(message.contains("No module named 'nope'"))
        #expect(message.contains("pilot job 43 on c2"))
        #expect(message.contains("2 attempts"))
        #expect(message.contains("in 60 s"))
        #expect(message.contains("dlhub logs"))
        #expect(table.latest(digest: "sha256:d")?.jobID == 43)
        #expect(table.latest(digest: "sha256:other") == nil)
        let json = LoadFailures.json(failure, now: now)
        #expect(json["retry_in_s"]?.intValue == 60)
        #expect(json["attempts"]?.intValue == 2)
    }
}
