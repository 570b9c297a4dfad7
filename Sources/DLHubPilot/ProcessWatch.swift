import Foundation
import Glibc

/// Holds each worker to its own number of processes.
///
/// `RLIMIT_NPROC` counts every process and thread of the service account on the node, so it can
/// only be a ceiling for all the pilot's workers together: one worker could hold a thousand
/// processes and starve every other worker of the pilot of forks. A per-worker count needs a
/// cgroup `pids.max`, which the service account is not delegated; so the pilot counts. Once a
/// second it reads the process table and counts each worker's tree (its sandbox included: a
/// process whose parent dies is re-parented to the sandbox's init, which stays in the tree); a
/// worker past the bound is killed, tree and all, and its batch fails saying why.
final class ProcessWatch: @unchecked Sendable {
    static let shared = ProcessWatch()

    /// Called with the tree's size when a worker is stopped; the worker keeps the reason.
    typealias Stop = @Sendable (_ processes: Int) -> Void

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
        let trees = ProcessTree.trees(of: Set(now.keys), parents: ProcessTree.readParents())
        for (root, members) in trees {
            guard let entry = now[root], members.count > entry.limit else { continue }
            forget(root)
            // The root first, through its owner (its sandbox dies with it), then whatever of the
            // tree is left: a worker without a sandbox has no namespace to take its children along.
            entry.stop(members.count)
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
    /// Every process's parent, from `/proc/<pid>/stat`.
    static func readParents() -> [pid_t: pid_t] {
        var parents: [pid_t: pid_t] = [:]
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return parents }
        for name in entries {
            guard let pid = pid_t(name), let data = FileManager.default.contents(atPath: "/proc/\(name)/stat"),
                let parent = parent(fromStat: Array(data))
            else { continue }
            parents[pid] = parent
        }
        return parents
    }

    /// The parent pid in a `/proc/<pid>/stat` line: `pid (comm) state ppid ...`, where comm may
    /// hold spaces and parentheses (it is whatever the process named itself), so the fields are
    /// counted from the last `)`.
    static func parent(fromStat line: [UInt8]) -> pid_t? {
        guard let close = line.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = line[(close + 1)...].split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)
        guard fields.count >= 2 else { return nil }
        return pid_t(String(decoding: fields[1], as: UTF8.self))
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
