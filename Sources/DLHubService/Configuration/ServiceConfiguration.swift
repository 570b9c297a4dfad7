import DLHubArchive
import DLHubCore
import Foundation

/// Everything `dlhubd` is configured with: one JSON file, environment overrides, safe defaults.
///
/// Precedence, lowest first: defaults, the file (`--config` or `DLHUB_CONFIG`), environment
/// variables (`DLHUB_REGISTRY`, `DLHUB_STATE_DIR`, `DLHUB_LISTEN`, `DLHUB_MAX_UPLOAD_BYTES`,
/// `DLHUB_TOKEN_TTL`), then command-line flags.
public struct ServiceConfiguration: Sendable {
    /// The registry on the shared filesystem (servables and `service.json`).
    public var registryRoot: String
    /// Service-local state on local disk: search index, task store, token key.
    public var stateDirectory: String
    public var listenHost: String = "127.0.0.1"
    public var listenPort: Int = 8750
    /// PEM certificate chain and key: the HTTP API then speaks HTTPS only.
    public var tlsCertificate: String?
    public var tlsKey: String?
    /// The address clients should use, when it differs from the listen address.
    public var publicURL: String?
    public var maxUploadBytes: Int = 512 * 1024 * 1024
    /// What an upload may unpack to (`max_archive_entries`, `max_unpacked_bytes`, `max_path_bytes`, `max_path_depth`).
    public var archiveLimits = ArchiveLimits()
    /// Largest run request body.
    public var maxRunRequestBytes: Int = 64 * 1024 * 1024
    public var tokenLifetimeSeconds: Int = 8 * 3600
    /// How stale a token's groups may be (`token_groups_refresh_seconds`): they are looked up
    /// again at most this long after the last look.
    public var tokenGroupRefreshSeconds: Int = 60
    /// How long a web catalogue session (from a `dlhub open` link) lasts.
    public var webSessionLifetimeSeconds: Int = 8 * 3600
    /// Per-user quotas, batch and cache bounds (`max_queued_items_per_user`,
    /// `max_queued_bytes_per_user`, `max_batch_bytes`, `result_cache_entries`, `result_cache_bytes`).
    public var dispatch = Dispatcher.Limits()
    /// Largest pilot frame once a pilot is authenticated (`max_pilot_frame_bytes`).
    public var pilotFrameBytes = 64 * 1024 * 1024
    /// An HTTP connection that sends no request for this long (or stalls in its headers) is closed.
    public var httpIdleTimeoutSeconds: Int = 60
    /// Open HTTP connections one peer address may hold; more are closed at once (a login node's
    /// users share its address, so the default is generous).
    public var httpMaxConnectionsPerPeer: Int = 1024
    /// Open HTTP connections at most, from everyone; nil: derived from the descriptor limit at start.
    public var httpMaxConnections: Int?
    public var pools: [PoolConfiguration] = []
    /// Whether an accepted task survives a power loss too (`task_store_synchronous: full`), not only
    /// a crash of dlhubd (`normal`, the default): an fsync per commit.
    public var durableTasks = false
    /// Seconds results are kept after a task finishes.
    public var resultRetentionSeconds: Int = 24 * 3600
    /// The interpreter pilots use for Python workers.
    public var python: String = "python3"
    /// The pilot executable; default: `dlhub-pilot` next to `dlhubd`.
    public var pilotExecutable: String?
    /// The Python worker shim; default: `python/dlhub_worker.py` found next to the binaries.
    public var workerScript: String?
    /// The pilot job template; default: `share/dlhub/slurm/pilot.sbatch.template` found next to the binaries.
    public var pilotTemplate: String?
    /// Where pilots connect: host:port of the pilot listener (port 0 picks one).
    public var pilotListenHost: String = "127.0.0.1"
    public var pilotListenPort: Int = 0
    /// How pilots sandbox workers (`isolation`, `bubblewrap`, `sandbox_read_only_paths`,
    /// `container_command`, `worker_tmp_mb`, `worker_max_processes`, `modulepath`).
    public var sandbox = SandboxSettings()
    /// How servables' Python environments are built (`environments_root`, `environment_python`,
    /// `environment_installer`, `uv`, `package_index`, `environment_cache`, `environment_gc_days`).
    public var environments = EnvironmentSettings()
    /// Logins allowed the admin routes (`dlhub env`); the service account and root always are.
    public var admins: [String] = []
    /// One log line per HTTP request (`access_log`).
    public var accessLog = false
    /// Whether a graceful stop leaves running pilot jobs for the next start to adopt (`keep`,
    /// the default) or cancels them (`cancel`). Pending pilot jobs are cancelled either way.
    public var pilotsOnStop = PilotsOnStop.keep
    /// How long a pilot that lost the service keeps its workers and tries to reconnect.
    public var pilotReconnectGraceSeconds = 300

    public enum PilotsOnStop: String, Sendable {
        case keep, cancel
    }

    public init(registryRoot: String, stateDirectory: String) {
        self.registryRoot = registryRoot
        self.stateDirectory = stateDirectory
    }

    /// Loads the configuration from a file (optional) and the environment.
    public static func load(file: String?, environment: [String: String]) throws(DLHubError) -> ServiceConfiguration {
        var config = ServiceConfiguration(
            registryRoot: environment["DLHUB_REGISTRY"] ?? "/var/lib/dlhub/registry",
            stateDirectory: environment["DLHUB_STATE_DIR"] ?? "/var/lib/dlhub/state")
        if let path = file ?? environment["DLHUB_CONFIG"] {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw DLHubError(
                    .badRequest, "cannot read the configuration file \(path); check the path given to --config or DLHUB_CONFIG")
            }
            let json: JSONValue
            do { json = try JSONValue.parse(Array(data)) } catch {
                throw DLHubError(.badRequest, "the configuration file \(path) is not valid JSON: \(error)")
            }
            try config.apply(json, source: path)
        }
        if let v = environment["DLHUB_REGISTRY"] { config.registryRoot = v }
        if let v = environment["DLHUB_STATE_DIR"] { config.stateDirectory = v }
        if let v = environment["DLHUB_LISTEN"] { try config.setListen(v) }
        if let v = environment["DLHUB_MAX_UPLOAD_BYTES"] {
            guard let n = Int(v), n > 0 else {
                throw DLHubError(.badRequest, "DLHUB_MAX_UPLOAD_BYTES must be a positive number of bytes, not '\(v)'")
            }
            config.maxUploadBytes = n
        }
        if let v = environment["DLHUB_TOKEN_TTL"] {
            guard let n = Int(v), n > 0 else {
                throw DLHubError(.badRequest, "DLHUB_TOKEN_TTL must be a positive number of seconds, not '\(v)'")
            }
            config.tokenLifetimeSeconds = n
        }
        if let v = environment["DLHUB_PYTHON"] { config.python = v }
        return config
    }

    public mutating func setListen(_ text: String) throws(DLHubError) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw DLHubError(.badRequest, "listen address '\(text)' must be HOST:PORT, e.g. 127.0.0.1:8750")
        }
        listenHost = String(text[..<colon])
        listenPort = port
    }

    mutating func apply(_ json: JSONValue, source: String) throws(DLHubError) {
        guard let members = json.objectValue else { throw DLHubError(.badRequest, "\(source): the configuration must be a JSON object") }
        for (key, value) in members {
            func str() throws(DLHubError) -> String {
                guard let s = value.stringValue else { throw DLHubError(.badRequest, "\(source): \(key) must be a string") }
                return s
            }
            func absolutePath() throws(DLHubError) -> String {
                let path = try str()
                guard path.hasPrefix("/") else { throw DLHubError(.badRequest, "\(source): \(key) must be an absolute path") }
                return path
            }
            func absolutePaths() throws(DLHubError) -> [String] {
                guard let list = value.arrayValue?.compactMap(\.stringValue), list.count == value.arrayValue?.count,
                    list.allSatisfy({ $0.hasPrefix("/") })
                else { throw DLHubError(.badRequest, "\(source): \(key) must be a list of absolute paths") }
                return list
            }
            func int() throws(DLHubError) -> Int {
                guard let n = value.intValue, n >= 0 else {
                    throw DLHubError(.badRequest, "\(source): \(key) must be a non-negative integer")
                }
                return Int(n)
            }
            switch key {
            case "registry_root": registryRoot = try str()
            case "state_dir": stateDirectory = try str()
            case "listen": try setListen(try str())
            case "public_url": publicURL = try str()
            case "tls_certificate": tlsCertificate = try absolutePath()
            case "tls_key": tlsKey = try absolutePath()
            case "max_upload_bytes": maxUploadBytes = try int()
            case "max_run_request_bytes": maxRunRequestBytes = try int()
            case "max_archive_entries": archiveLimits.entries = max(1, try int())
            case "max_unpacked_bytes": archiveLimits.bytes = Int64(max(1, try int()))
            case "max_path_bytes": archiveLimits.pathBytes = max(16, try int())
            case "max_path_depth": archiveLimits.depth = max(1, try int())
            case "token_ttl_seconds": tokenLifetimeSeconds = try int()
            case "token_groups_refresh_seconds": tokenGroupRefreshSeconds = max(0, try int())
            case "web_session_lifetime_seconds": webSessionLifetimeSeconds = max(60, try int())
            case "http_idle_timeout_seconds": httpIdleTimeoutSeconds = max(1, try int())
            case "http_max_connections_per_peer": httpMaxConnectionsPerPeer = max(1, try int())
            case "http_max_connections": httpMaxConnections = max(1, try int())
            case "max_queued_items_per_user": dispatch.queuedItemsPerUser = max(1, try int())
            case "max_queued_bytes_per_user": dispatch.queuedBytesPerUser = Int64(max(1, try int()))
            case "max_batch_bytes": dispatch.batchBytes = max(1024, try int())
            case "result_cache_entries": dispatch.cacheEntries = max(1, try int())
            case "result_cache_bytes": dispatch.cacheBytes = max(1, try int())
            case "max_pilot_frame_bytes": pilotFrameBytes = max(64 * 1024, try int())
            case "result_retention_seconds": resultRetentionSeconds = try int()
            case "task_store_synchronous":
                switch try str() {
                case "normal": durableTasks = false
                case "full": durableTasks = true
                default: throw DLHubError(.badRequest, "\(source): task_store_synchronous must be normal or full")
                }
            case "access_log":
                guard let b = value.boolValue else { throw DLHubError(.badRequest, "\(source): access_log must be true or false") }
                accessLog = b
            case "pilots_on_stop":
                guard let mode = PilotsOnStop(rawValue: try str()) else {
                    throw DLHubError(.badRequest, "\(source): pilots_on_stop must be keep or cancel")
                }
                pilotsOnStop = mode
            case "pilot_reconnect_grace_seconds": pilotReconnectGraceSeconds = max(0, try int())
            case "python": python = try str()
            case "pilot_executable": pilotExecutable = try str()
            case "pilot_template": pilotTemplate = try str()
            case "worker_script": workerScript = try str()
            case "pilot_listen":
                var copy = self
                try copy.setListen(try str())
                pilotListenHost = copy.listenHost
                pilotListenPort = copy.listenPort
            case "isolation": sandbox.isolation = try IsolationMode(setting: try str())
            case "bubblewrap": sandbox.bubblewrap = try str()
            case "sandbox_read_only_paths": sandbox.readOnlyPaths = try absolutePaths()
            case "modulepath": sandbox.modulePath = try absolutePaths()
            case "container_command":
                guard let words = value.arrayValue?.compactMap(\.stringValue), words.count == value.arrayValue?.count else {
                    throw DLHubError(.badRequest, "\(source): container_command must be a list of words")
                }
                try ApptainerCommand.validate(words)
                sandbox.containerCommand = words
            case "worker_tmp_mb": sandbox.workerTmpMB = max(1, try int())
            case "worker_max_processes": sandbox.workerMaxProcesses = max(1, try int())
            case "environments_root": environments.root = try absolutePath()
            case "environment_python": environments.basePython = try absolutePath()
            case "environment_installer":
                guard let installer = EnvironmentSettings.Installer(rawValue: try str()) else {
                    throw DLHubError(.badRequest, "\(source): environment_installer must be auto, uv, pip or none")
                }
                environments.installer = installer
            case "uv": environments.uv = try str()
            case "package_index": environments.packageIndex = try str()
            case "environment_cache": environments.cache = try absolutePath()
            case "environment_gc_days": environments.gcAfterDays = try int()
            case "environment_build_timeout_seconds": environments.buildTimeoutSeconds = max(1, try int())
            case "admins":
                guard let list = value.arrayValue?.compactMap(\.stringValue), list.count == value.arrayValue?.count else {
                    throw DLHubError(.badRequest, "\(source): admins must be a list of logins")
                }
                admins = list
            case "pools":
                guard let list = value.arrayValue else { throw DLHubError(.badRequest, "\(source): pools must be a list") }
                pools = []
                for (i, p) in list.enumerated() { pools.append(try PoolConfiguration(json: p, path: "\(source): pools[\(i)]")) }
            default:
                throw DLHubError(
                    .badRequest, "\(source): unknown setting '\(key)'; see docs/configuration.md for the settings dlhubd reads")
            }
        }
    }
}

/// How servables' Python environments are built.
public struct EnvironmentSettings: Sendable, Hashable {
    public enum Installer: String, Sendable, Hashable {
        /// `uv` when it is installed, else `pip`.
        case auto, uv, pip
        /// Build nothing: servables that declare dependencies run with the pool's default environment.
        case none
    }

    /// Where environments live; default `<registry_root>/environments` (on the shared filesystem,
    /// so pilots on every node see them at the same path).
    public var root: String?
    /// The interpreter environments are made from (on every node at the same path).
    public var basePython = "/usr/bin/python3"
    public var installer: Installer = .auto
    /// The `uv` program; default: beside the default worker Python, then on `PATH`.
    public var uv: String?
    /// The package index the site uses (`--index-url`); default: the installer's (PyPI).
    public var packageIndex: String?
    /// The installer's download cache; default `<root>/.cache`.
    public var cache: String?
    public var gcAfterDays = 30
    public var buildTimeoutSeconds = 1800

    public init() {}
}
