import CSpawn
import Foundation
import Glibc

/// A child process started with `posix_spawn` and explicit file actions: its standard streams are
/// three pipes, every other descriptor is closed in the child (`closefrom(3)`), its signal mask is
/// empty and every signal has its default action but those named in `keepingIgnored`. Nothing of
/// the parent reaches it but what is named here (Foundation's `Process` left its own exit-watch
/// socket open in the child).
public final class ChildProcess: @unchecked Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public let pid: pid_t
    /// The parent's ends: write to `stdin`, read `stdout` and `stderr`.
    public let stdin: Int32
    public let stdout: Int32
    public let stderr: Int32

    private let lock = NSLock()
    private var status: Int32?
    private var stdinOpen = true

    /// A write to a child that died must be an error (EPIPE), not the end of the parent.
    private static let ignoreBrokenPipes: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

    /// Starts `executable` (a path, not looked up in PATH) in `directory`. The signals in
    /// `keepingIgnored` are ignored in the child: the parent ignores them too, and they are left out
    /// of the set reset to default (a pilot's workers must outlive Slurm's walltime warning, which
    /// reaches every process of the job).
    public init(
        executable: String, arguments: [String], environment: [String: String], directory: String, keepingIgnored: [Int32] = []
    ) throws {
        Self.ignoreBrokenPipes
        var fds: [Int32] = []
        func pipePair() throws -> (read: Int32, write: Int32) {
            var ends: [Int32] = [-1, -1]
            guard cspawn_pipe_cloexec(&ends) == 0 else {
                throw Failure(description: "cannot create a pipe: \(String(cString: strerror(errno)))")
            }
            fds += ends
            return (ends[0], ends[1])
        }
        do {
            let input = try pipePair()
            let output = try pipePair()
            let errors = try pipePair()

            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            // dup2 clears close-on-exec on the copy; the originals close at exec.
            posix_spawn_file_actions_adddup2(&actions, input.read, 0)
            posix_spawn_file_actions_adddup2(&actions, output.write, 1)
            posix_spawn_file_actions_adddup2(&actions, errors.write, 2)
            guard cspawn_add_closefrom(&actions, 3) == 0 else { throw Failure(description: "posix_spawn cannot close descriptors") }
            guard cspawn_add_chdir(&actions, directory) == 0 else {
                throw Failure(description: "posix_spawn cannot change to \(directory)")
            }

            var attributes = posix_spawnattr_t()
            posix_spawnattr_init(&attributes)
            defer { posix_spawnattr_destroy(&attributes) }
            var empty = sigset_t()
            sigemptyset(&empty)
            var all = sigset_t()
            sigfillset(&all)
            for sig in keepingIgnored {
                _ = signal(sig, SIG_IGN)
                sigdelset(&all, sig)
            }
            posix_spawnattr_setsigmask(&attributes, &empty)
            posix_spawnattr_setsigdefault(&attributes, &all)
            posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

            let argv = ([executable] + arguments).map { strdup($0) }
            let envp = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") }
            defer {
                argv.forEach { free($0) }
                envp.forEach { free($0) }
            }
            var child: pid_t = 0
            let rc = (argv + [nil]).withUnsafeBufferPointer { argvBuffer in
                (envp + [nil]).withUnsafeBufferPointer { envpBuffer in
                    posix_spawn(
                        &child, executable, &actions, &attributes, argvBuffer.baseAddress!,
                        envpBuffer.baseAddress!)
                }
            }
            guard rc == 0 else { throw Failure(description: String(cString: strerror(rc))) }
            pid = child
            close(input.read)
            close(output.write)
            close(errors.write)
            stdin = input.write
            stdout = output.read
            stderr = errors.read
        } catch {
            fds.forEach { close($0) }
            throw error
        }
    }

    /// Reaps the child if it ended; nil while it runs. Never blocks under the lock, so that
    /// `send` works while another thread waits.
    private func poll() -> Int32? {
        lock.lock()
        defer { lock.unlock() }
        if let status { return status }
        var raw: Int32 = 0
        while true {
            let r = waitpid(pid, &raw, WNOHANG)
            if r == pid { break }
            if r == 0 { return nil }
            if errno == EINTR { continue }
            // Not our child any more (cannot happen unless someone else reaped it): call it gone.
            status = -1
            return status
        }
        // Exit code, or the number of the signal that ended it (as Foundation's Process reports).
        let signal = raw & 0x7f
        status = signal == 0 ? (raw >> 8) & 0xff : signal
        return status
    }

    public var isRunning: Bool { poll() == nil }

    /// Waits for the child to end and returns its exit code (or the signal number that ended it).
    @discardableResult
    public func wait() -> Int32 {
        while true {
            if let status = poll() { return status }
            // Waits without reaping (WNOWAIT): the reaping is poll's, under the lock.
            var info = siginfo_t()
            if waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0, errno != EINTR { return poll() ?? -1 }
        }
    }

    /// Sends `signal` if the child has not been reaped (a reaped pid may belong to someone else).
    public func send(_ signal: Int32) {
        lock.lock()
        defer { lock.unlock() }
        if status == nil { _ = kill(pid, signal) }
    }

    public func closeStdin() {
        lock.lock()
        defer { lock.unlock() }
        if stdinOpen {
            close(stdin)
            stdinOpen = false
        }
    }

    deinit {
        if stdinOpen { close(stdin) }
        close(stdout)
        close(stderr)
    }
}
