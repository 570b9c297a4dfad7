import DLHubCore
import Foundation

/// The Unix users and group the test set-up creates (`scripts/test-users`): alice and carol are
/// in group `physics`, bob is not.
public enum TestUsers {
    public static let alice = "alice"
    public static let bob = "bob"
    public static let carol = "carol"
    public static let group = "physics"

    /// Fails with the fix when the users are missing, so tests never pass vacuously.
    public static func require() throws {
        for user in [alice, bob, carol] {
            guard getpwnam(user) != nil else {
                throw TestSetupError("test user '\(user)' does not exist; run `sudo scripts/test-users` (the README's test command does)")
            }
        }
        guard getuid() == 0 else { throw TestSetupError("these tests act as several Unix users and must run as root") }
    }

    /// A fresh munge credential made by `user`, as `runuser -u user -- munge -n` prints it.
    /// A munge credential made by `user` for the service `serviceID` (the payload `dlhub` puts in).
    public static func munge(as user: String, for serviceID: String) throws -> String {
        try munge(as: user, payload: "dlhub-service:" + serviceID)
    }

    /// A munge credential made by `user` with an empty payload (`munge -n`): the service refuses it.
    public static func munge(as user: String) throws -> String {
        let result = try Subprocess.run("/usr/sbin/runuser", ["-u", user, "--", "munge", "-n"])
        guard result.status == 0 else { throw TestSetupError("munge as \(user) failed: \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A munge credential made by `user` carrying `payload` (as a pilot's names its job).
    public static func munge(as user: String, payload: String) throws -> String {
        let result = try Subprocess.run("/usr/sbin/runuser", ["-u", user, "--", "munge", "-s", payload])
        guard result.status == 0 else { throw TestSetupError("munge as \(user) failed: \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public static func uid(_ user: String) -> UInt32? { getpwnam(user).map { $0.pointee.pw_uid } }
}

public struct TestSetupError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Runs a program and collects its output: the tests' way to drive real executables.
public enum Subprocess {
    public struct Result: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    public static func run(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil, input: Data? = nil,
        directory: String? = nil
    ) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let out = Pipe(), err = Pipe(), inPipe = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = inPipe
        try process.run()
        if let input { inPipe.fileHandleForWriting.write(input) }
        try? inPipe.fileHandleForWriting.close()
        // Read both pipes concurrently so a chatty child cannot block on a full pipe.
        let group = DispatchGroup()
        nonisolated(unsafe) var errData = Data()
        group.enter()
        DispatchQueue.global().async {
            errData = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self))
    }

    /// Runs as another user with a clean environment plus `environment`.
    public static func run(
        as user: String, _ executable: String, _ arguments: [String], environment: [String: String] = [:], directory: String? = nil
    ) throws -> Result {
        var env = ["PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"]
        if let pw = getpwnam(user) { env["HOME"] = String(cString: pw.pointee.pw_dir) }
        for (k, v) in environment { env[k] = v }
        let envArgs = env.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        return try run(
            "/usr/sbin/runuser", ["-u", user, "--", "/usr/bin/env", "-i"] + envArgs + [executable] + arguments, directory: directory)
    }
}

/// A directory that is removed when the test is done; world-readable so test users can use it.
public final class TemporaryDirectory: @unchecked Sendable {
    public let path: String

    public init(_ label: String = "dlhub-test") throws {
        let base = NSTemporaryDirectory()
        let template = (base.hasSuffix("/") ? base : base + "/") + "\(label)-XXXXXX"
        var bytes = Array(template.utf8CString)
        guard let created = mkdtemp(&bytes) else { throw TestSetupError("mkdtemp failed") }
        path = String(cString: created)
        chmod(path, 0o755)
    }

    public func file(_ name: String) -> String { path + "/" + name }

    /// Removes the directory, unless `DLHUB_KEEP_TEST_DIRS=1` asks to keep it for a post-mortem.
    public func remove() {
        guard ProcessInfo.processInfo.environment["DLHUB_KEEP_TEST_DIRS"] != "1" else { return }
        try? FileManager.default.removeItem(atPath: path)
    }

    deinit { remove() }
}

/// Locates the built executables (`dlhubd`, `dlhub`, `dlhub-pilot`) for end-to-end tests.
public enum BuiltProducts {
    public static func path(_ name: String, file: String = #filePath) throws -> String {
        if let dir = ProcessInfo.processInfo.environment["DLHUB_BIN_DIR"] {
            let p = dir + "/" + name
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        // <package>/Sources/DLHubTesting/TestUsers.swift -> <package>/.build/debug/<name>
        let package = URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for config in ["debug", "release"] {
            let p = package.appendingPathComponent(".build/\(config)/\(name)").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        throw TestSetupError("cannot find the built \(name); run `swift build` first or set DLHUB_BIN_DIR")
    }

    public static var packageRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }
}

/// A flag set once, read from anywhere: for tests that check what happened first.
public final class LockedFlag: @unchecked Sendable {
    private var flag = false
    private let lock = NSLock()
    public init() {}
    public func set() { lock.lock(); flag = true; lock.unlock() }
    public var value: Bool { lock.lock(); defer { lock.unlock() }; return flag }
}
