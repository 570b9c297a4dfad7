import DLHubCore
import Foundation

/// A real `dlhubd` process over a scratch registry, for end-to-end tests.
public final class LiveService: @unchecked Sendable {
    public let directory: TemporaryDirectory
    public let process: Process
    public let logPath: String
    public private(set) var url: String = ""
    public var registry: String { directory.file("registry") }
    public var stateDirectory: String { directory.file("state") }

    /// Starts dlhubd on a free port and waits until it has written service.json.
    public init(directory: TemporaryDirectory? = nil, config: JSONValue? = nil, environment: [String: String] = [:]) throws {
        self.directory = try directory ?? TemporaryDirectory("dlhub-e2e")
        logPath = self.directory.file("dlhubd-\(UInt32.random(in: 0...UInt32.max)).log")
        try? FileManager.default.removeItem(atPath: self.directory.file("registry/service.json"))
        var args = ["--registry", self.directory.file("registry"), "--state-dir", self.directory.file("state"), "--listen", "127.0.0.1:0"]
        if let config {
            let path = self.directory.file("dlhubd.json")
            _ = FileManager.default.createFile(atPath: path, contents: Data(config.encoded(pretty: true)))
            args += ["--config", path]
        }
        process = Process()
        process.executableURL = URL(fileURLWithPath: try BuiltProducts.path("dlhubd"))
        process.arguments = args
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = FileHandle(forWritingAtPath: logPath)!
        process.standardOutput = log
        process.standardError = log
        try process.run()
        try waitUntilListening()
    }

    func waitUntilListening(timeout: Double = 60) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let data = FileManager.default.contents(atPath: registry + "/service.json"),
                let json = try? JSONValue.parse(Array(data)), json["pid"]?.intValue == Int64(process.processIdentifier),
                let u = json["url"]?.stringValue
            {
                url = u
                return
            }
            guard process.isRunning else { throw TestSetupError("dlhubd exited early: \(log)") }
            usleep(50_000)
        }
        throw TestSetupError("dlhubd did not start listening within \(timeout)s: \(log)")
    }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Graceful stop (SIGTERM), as a service manager would.
    public func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }

    /// Crash (SIGKILL).
    public func kill() {
        guard process.isRunning else { return }
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    deinit { kill() }
}

/// The `dlhub` CLI run as a given user against a live service.
public struct CLI: Sendable {
    public let executable: String
    public let registry: String

    public init(service: LiveService) throws {
        executable = try BuiltProducts.userAccessibleCopy("dlhub")
        registry = service.registry
    }

    @discardableResult
    public func run(
        as user: String, _ args: [String], environment: [String: String] = [:], directory: String? = nil
    ) throws -> Subprocess.Result {
        var env = ["DLHUB_REGISTRY": registry]
        for (k, v) in environment { env[k] = v }
        return try Subprocess.run(as: user, executable, args, environment: env, directory: directory)
    }
}

extension BuiltProducts {
    /// A copy of a built executable in a world-readable place, so other test users can run it
    /// wherever the checkout lives.
    public static func userAccessibleCopy(_ name: String) throws -> String {
        let source = try path(name)
        let dir = "/tmp/dlhub-test-bin-\(getpid())"
        let target = dir + "/" + name
        lock.lock()
        defer { lock.unlock() }
        if !FileManager.default.fileExists(atPath: target) {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            try FileManager.default.copyItem(atPath: source, toPath: target + ".tmp")
            chmod(target + ".tmp", 0o755)
            rename(target + ".tmp", target)
        }
        return target
    }

    static let lock = NSLock()
}
