import Foundation

/// The one thread worker processes are started from, alive as long as the pilot.
///
/// bubblewrap's `--die-with-parent` is `PR_SET_PDEATHSIG`, and Linux sends that signal when the
/// *thread* that started the process exits, not the process (prctl(2)). Workers were started
/// from libdispatch pool threads, which the pool retires when it shrinks. Suspected cause of
/// "the worker crashed (exit status 9)" for one of two 12-second inputs started side by side
/// (`QueueWaitTests.busyPilots...` failed 3 of 5 runs before this, passed every run after).
final class SpawnThread: @unchecked Sendable {
    static let shared = SpawnThread()

    private let condition = NSCondition()
    private var jobs: [() -> Void] = []

    private init() {
        let thread = Thread { [unowned self] in self.loop() }
        thread.name = "dlhub-spawn"
        thread.start()
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
        }
    }

    /// Runs `body` on the spawn thread and returns what it returns (the caller waits).
    func sync<T>(_ body: @escaping () throws -> T) throws -> T {
        let done = NSCondition()
        var result: Result<T, any Error>?
        condition.lock()
        jobs.append {
            let r = Result { try body() }
            done.lock()
            result = r
            done.signal()
            done.unlock()
        }
        condition.signal()
        condition.unlock()
        done.lock()
        while result == nil { done.wait() }
        done.unlock()
        return try result!.get()
    }
}
