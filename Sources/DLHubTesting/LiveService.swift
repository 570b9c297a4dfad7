import DLHubCore
import Foundation

/// A real `dlhubd` process over a scratch registry, for end-to-end tests, run as the
/// unprivileged service account (never root) from the test install.
public final class LiveService: @unchecked Sendable {
    public let directory: TemporaryDirectory
    public let process: Process
    public let logPath: String
    public private(set) var url: String = ""
    public var registry: String { directory.file("registry") }
    public var stateDirectory: String { directory.file("state") }

    /// Starts dlhubd on a free port and waits until it has written service.json.
    ///
    /// `config` is written as its configuration file; unless it names one, the worker Python is
    /// the default worker environment (`TestInstall.workerPython`).
    /// `descriptorLimit` starts it with that many descriptors at most (soft and hard), as a
    /// node whose limits are tight would.
    public init(
        directory: TemporaryDirectory? = nil, config: JSONValue? = nil, environment: [String: String] = [:], descriptorLimit: Int? = nil
    ) throws {
        try TestInstall.require()
        self.directory = try directory ?? TemporaryDirectory("dlhub-e2e")
        try TestInstall.handToServiceAccount(self.directory.path)
        logPath = self.directory.file("dlhubd-\(UInt32.random(in: 0...UInt32.max)).log")
        try? FileManager.default.removeItem(atPath: self.directory.file("registry/service.json"))
        var settings = config ?? [:]
        if settings["python"] == nil { settings = settings.setting(["python"], to: .string(TestInstall.workerPython)) }
        // Tests stop services all the time: unless a test is about restarts, a stop cancels its
        // pilots and a pilot that lost its service gives up soon, so none lingers on the nodes.
        if settings["pilots_on_stop"] == nil { settings = settings.setting(["pilots_on_stop"], to: "cancel") }
        if settings["pilot_reconnect_grace_seconds"] == nil { settings = settings.setting(["pilot_reconnect_grace_seconds"], to: 20) }
        // Environment builds share one download cache across the test run.
        if settings["environment_cache"] == nil {
            let cache = "/var/tmp/dlhub-test-service-cache"
            try? FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
            try TestInstall.handToServiceAccount(cache)
            settings = settings.setting(["environment_cache"], to: .string(cache))
        }
        let configPath = self.directory.file("dlhubd.json")
        _ = FileManager.default.createFile(atPath: configPath, contents: Data(settings.encoded(pretty: true)))
        chmod(configPath, 0o644)
        let args = [
            "--registry", self.directory.file("registry"), "--state-dir", self.directory.file("state"), "--listen", "127.0.0.1:0",
            "--config", configPath,
        ]
        // setpriv and env both exec: the process is dlhubd itself, so kill() reaches it.
        let user = TestInstall.serviceUser
        var env = [
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": String(cString: getpwnam(user)!.pointee.pw_dir), "USER": user,
            "LOGNAME": user, "LANG": "C.UTF-8",
        ]
        env["SLURM_CONF"] = ProcessInfo.processInfo.environment["SLURM_CONF"] ?? DevCluster.defaultConf
        // How this machine reaches the package index (its proxies and certificate authorities).
        for (k, v) in NetworkEnvironment.passedThrough(ProcessInfo.processInfo.environment) { env[k] = v }
        for (k, v) in environment { env[k] = v }
        process = Process()
        let prefix = descriptorLimit.map { ["/usr/bin/prlimit", "--nofile=\($0):\($0)", "--"] } ?? []
        process.executableURL = URL(fileURLWithPath: prefix.first ?? "/usr/bin/setpriv")
        process.arguments =
            Array(prefix.dropFirst()) + (prefix.isEmpty ? [] : ["/usr/bin/setpriv"]) + [
                "--reuid=\(user)", "--regid=\(user)", "--init-groups", "/usr/bin/env", "-i",
            ]
            + env.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" } + [try TestInstall.executable("dlhubd")] + args
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

    /// The service's id, from the registry's `service.json`: what munge credentials for it carry.
    public var serviceID: String {
        let data = FileManager.default.contents(atPath: registry + "/service.json") ?? Data()
        return (try? JSONValue.parse(Array(data)))?["service_id"]?.stringValue ?? ""
    }

    /// Graceful stop (SIGTERM), as a service manager would; after `within` seconds (systemd's
    /// stop timeout) SIGKILL, and `stopTimedOut` says so for the test to fail on.
    public func stop(within seconds: Double = 30) {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning, Date() < deadline { usleep(20_000) }
        if process.isRunning {
            stopTimedOut = true
            FileHandle.standardError.write(Data("dlhubd did not stop within \(Int(seconds)) s of SIGTERM; killed\n".utf8))
            kill()
        }
        process.waitUntilExit()
    }

    /// Whether the last `stop()` had to kill the service.
    public private(set) var stopTimedOut = false

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
        executable = try TestInstall.executable("dlhub")
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
