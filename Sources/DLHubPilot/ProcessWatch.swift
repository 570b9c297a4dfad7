import Foundation
import Glibc

/// Holds each worker to its own number of processes and threads.
///
/// `RLIMIT_NPROC` counts every process and thread of the service account on the node, so it can
/// only be a ceiling for all the pilot's workers together: one worker could hold a thousand
/// processes (or threads: found by the red team, whose worker held 1,118 threads in two
/// processes until no other worker could start) and starve every other worker of the pilot. A
/// per-worker count needs a cgroup `pids.max`, which the service account is not delegated; so
/// the pilot counts. Once a second it reads the process table and counts the threads of each
/// worker's tree (its sandbox included: a process whose parent dies is re-parented to the
/// sandbox's init, which stays in the tree); a worker past the bound is killed, tree and all,
/// and its batch fails saying why.
final class ProcessWatch: @unchecked Sendable {
    static let shared = ProcessWatch()

    /// Called with the tree's count of threads when a worker is stopped; the worker keeps the reason.
    typealias Stop = @Sendable (_ tasks: Int) -> Void

    private let lock = NSLock()
    private var watched: [pid_t: (limit: Int, stop: Stop)] = [:]
    private var timer: (any DispatchSourceTimer)?
    private let queue = DispatchQueue(label: "dlhub.process-watch")

    /// Watches the tree below `root` (the worker's first process) until `forget`.
    func watch(_ root: pid_t, limit: Int, stop: @escaping Stop) {
        lock.lock()
        defer { lock.unlock() }
        watched[root] = (max(1, limit), stop)
        guard timer == nil else { return }
        let t = DispatchSource.makeTimerSource(queue: queue)
        t.schedule(deadline: .now() + 1, repeating: 1.0, leeway: .milliseconds(100))
        t.setEventHandler { [weak self] in self?.check() }
        t.resume()
        timer = t
    }

    func forget(_ root: pid_t) {
        lock.lock()
        watched.removeValue(forKey: root)
        lock.unlock()
    }

    private func check() {
        lock.lock()
        let now = watched
        lock.unlock()
        guard !now.isEmpty else { return }
        let table = ProcessTree.readTable()
        let trees = ProcessTree.trees(of: Set(now.keys), parents: table.mapValues(\.parent))
        for (root, members) in trees {
            let tasks = members.reduce(0) { $0 + max(1, table[$1]?.threads ?? 1) }
            guard let entry = now[root], tasks > entry.limit else { continue }
            forget(root)
            // The root first, through its owner (its sandbox dies with it), then whatever of the
            // tree is left: a worker without a sandbox has no namespace to take its children along.
            entry.stop(tasks)
            for pid in members where pid != root { _ = kill(pid, SIGKILL) }
        }
    }
}

/// A value behind a lock, for a flag set on one thread and read on another.
final class Locked<Value: Sendable>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()
    init(_ value: Value) { self.value = value }
    func get() -> Value {
        lock.lock()
        defer { lock.unlock() }
        return value
    }
    func set(_ new: Value) {
        lock.lock()
        value = new
        lock.unlock()
    }
}

/// The process table as parent links, and the trees below given roots. Pure but for
/// `readParents`, which reads `/proc`.
enum ProcessTree {
    /// Every process's parent and thread count, from `/proc/<pid>/stat`.
    static func readTable() -> [pid_t: (parent: pid_t, threads: Int)] {
        var table: [pid_t: (parent: pid_t, threads: Int)] = [:]
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return table }
        for name in entries {
            guard let pid = pid_t(name), let data = FileManager.default.contents(atPath: "/proc/\(name)/stat"),
                let entry = entry(fromStat: Array(data))
            else { continue }
            table[pid] = entry
        }
        return table
    }

    /// The parent pid and the thread count in a `/proc/<pid>/stat` line: `pid (comm) state ppid
    /// ...` with `num_threads` the 20th field, where comm may hold spaces and parentheses (it is
    /// whatever the process named itself), so the fields are counted from the last `)`.
    static func entry(fromStat line: [UInt8]) -> (parent: pid_t, threads: Int)? {
        guard let close = line.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = line[(close + 1)...].split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)
        guard fields.count >= 2, let parent = pid_t(String(decoding: fields[1], as: UTF8.self)) else { return nil }
        let threads = fields.count > 17 ? Int(String(decoding: fields[17], as: UTF8.self)) ?? 1 : 1
        return (parent, threads)
    }

    /// Each root's tree (itself and every descendant) in `parents`; a root that is gone has none.
    static func trees(of roots: Set<pid_t>, parents: [pid_t: pid_t]) -> [pid_t: [pid_t]] {
        var children: [pid_t: [pid_t]] = [:]
        for (pid, parent) in parents where pid != parent { children[parent, default: []].append(pid) }
        var out: [pid_t: [pid_t]] = [:]
        for root in roots where parents[root] != nil {
            var members: [pid_t] = []
            var seen: Set<pid_t> = []
            var stack = [root]
            while let pid = stack.popLast() {
                guard seen.insert(pid).inserted else { continue }
                members.append(pid)
                stack += children[pid] ?? []
            }
            out[root] = members
        }
        return out
    }
}
