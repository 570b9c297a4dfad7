import DLHubCore
import Foundation
import Logging
import Metrics

/// Python environments for servables, built by the service (never on a scientist's login
/// session) in an environments area on the shared filesystem beside the registry.
///
/// Content-addressed: the same dependency set, base interpreter and package index give the same
/// environment, shared by every servable that declares it. An environment is built once, from
/// wheels only (`--only-binary :all:`, so no package's code runs while it is built), with `uv`
/// where it is installed and `pip` otherwise. `<root>/<id>/` is the virtual environment, complete
/// once `dlhub-environment.json` is in it; `<root>/<id>.failed.json` keeps a failed build's
/// error until an admin rebuilds it. Unused environments are removed after a configurable time.
public actor EnvironmentStore {
    public enum Status: Sendable, Equatable {
        case ready(interpreter: String)
        case building(since: Date)
        case failed(String)
    }

    public struct Entry: Sendable {
        public var id: String
        public var requirements: PythonRequirements
        public var status: Status
        public var builtAt: Date?
        public var buildSeconds: Double?
        public var lastUsed: Date?
    }

    let settings: EnvironmentSettings
    let root: String
    let logger: Logger
    /// `uv` (preferred) or nil for pip.
    let uv: String?
    var baseVersion = ""
    var entries: [String: Entry] = [:]
    var building = 0
    /// Builds waiting for one of the `maximumConcurrentBuilds`, and whose servable asked for each.
    var pending: [(id: String, user: String)] = []
    /// When each user's latest build started (a count of starts): users take turns.
    var lastStart: [String: UInt64] = [:]
    var starts: UInt64 = 0
    var listener: (@Sendable (String, Status) async -> Void)?
    let builds = Counter(label: "dlhub_environment_builds_total")
    let buildFailures = Counter(label: "dlhub_environment_build_failures_total")

    static let maximumConcurrentBuilds = 2
    static let marker = "dlhub-environment.json"

    /// `defaultPython` is the pool's interpreter: `uv` is looked for beside it, then on `PATH`.
    public init(settings: EnvironmentSettings, registryRoot: String, defaultPython: String, logger: Logger) {
        self.settings = settings
        root = settings.root ?? registryRoot + "/environments"
        self.logger = logger
        if settings.installer == .pip {
            uv = nil
        } else if let configured = settings.uv {
            uv = ProcessRunner.which(configured)
        } else {
            let beside = ProcessRunner.which(defaultPython).map { ($0 as NSString).deletingLastPathComponent + "/uv" }
            uv = beside.flatMap { FileManager.default.isExecutableFile(atPath: $0) ? $0 : nil } ?? ProcessRunner.which("uv")
        }
    }

    /// Whether the site builds environments at all (`environment_installer: none` turns it off:
    /// servables then run with the pool's default environment).
    public nonisolated var enabled: Bool { settings.installer != .none }

    public func setListener(_ listener: @escaping @Sendable (String, Status) async -> Void) {
        self.listener = listener
    }

    /// Reads what earlier runs built; removes half-built environments. Call at start.
    public func start() async throws(DLHubError) {
        guard enabled else { return }
        let root = self.root, python = settings.basePython
        let found = try await BlockingIO.run { () throws(DLHubError) -> (String, [String: Entry]) in
            do {
                try FileManager.default.createDirectory(
                    atPath: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            } catch {
                throw DLHubError(.internal, "cannot create the environments area \(root): \(error.localizedDescription)", cause: error)
            }
            let version =
                (try? ProcessRunner.run(python, ["-c", "import sys; print(sys.version.split()[0])"], environment: [:], timeout: 30))
                .flatMap { $0.status == 0 ? $0.output.trimmingCharacters(in: .whitespacesAndNewlines) : nil } ?? "unknown"
            return (version, Self.scan(root))
        }
        baseVersion = found.0
        ids.removeAll()
        entries = found.1
        if baseVersion == "unknown" {
            logger.error(
                "the interpreter for servable environments does not run; builds will fail", metadata: ["environment.python": "\(python)"])
        }
        logger.info(
            "environments",
            metadata: [
                "environment.root": "\(root)", "environment.installer": "\(uv ?? "pip")", "environment.python": "\(python) \(baseVersion)",
                "environment.count": "\(entries.count)",
            ])
    }

    /// The content address of a dependency set.
    public func id(for requirements: PythonRequirements) -> String {
        if let known = ids[requirements] { return known }
        if ids.count > 10_000 { ids.removeAll() }
        let id = computeID(requirements)
        ids[requirements] = id
        return id
    }

    /// Ids already computed (asked for on every run request of a servable with its own environment).
    private var ids: [PythonRequirements: String] = [:]

    private func computeID(_ requirements: PythonRequirements) -> String {
        let identity: JSONValue = [
            "python": .string(settings.basePython + " " + baseVersion), "packages": requirements.canonical,
            "index": settings.packageIndex.map { .string($0) } ?? .null,
        ]
        return "py-" + ContentDigest.sha256Hex(identity.encoded()).prefix(24)
    }

    /// The status of a dependency set's environment, without starting anything; nil when never built.
    public func status(_ requirements: PythonRequirements) -> Status? {
        entries[id(for: requirements)]?.status
    }

    /// The environment's status, starting its build when there is none yet. `user` is the owner
    /// of the servable that needs it: users take turns for the build slots.
    @discardableResult
    public func ensure(_ requirements: PythonRequirements, for user: String) -> (id: String, status: Status) {
        let id = id(for: requirements)
        if let entry = entries[id] { return (id, entry.status) }
        let status = Status.building(since: Date())
        entries[id] = Entry(id: id, requirements: requirements, status: status)
        schedule(id, for: user)
        return (id, status)
    }

    /// Throws the environment away and builds it again (for admins).
    public func rebuild(_ id: String) async throws(DLHubError) -> Status {
        guard let entry = entries[id] else { throw DLHubError(.notFound, "no environment \(id); `dlhub env ls` lists them") }
        if case .building = entry.status { return entry.status }
        let root = self.root
        // Workers running in it are stopped first (the dispatcher unloads them).
        await listener?(id, .building(since: Date()))
        try await BlockingIO.run { () throws(DLHubError) in Self.remove(id, in: root) }
        entries[id]?.status = .building(since: Date())
        schedule(id, for: "")
        return .building(since: Date())
    }

    /// Marks an environment as used now (a worker is about to load with it).
    public func touch(_ id: String) { entries[id]?.lastUsed = Date() }

    public func list() -> [Entry] { entries.values.sorted { $0.id < $1.id } }

    /// What `describe` shows of a servable's environment: its kind and, for a Python
    /// environment, its packages and the state of its build.
    public func describe(_ environment: ServableEnvironment) -> JSONValue {
        var out: [String: JSONValue] = ["type": .string(environment.kind.rawValue)]
        if !environment.modules.isEmpty { out["modules"] = .array(environment.modules.map { .string($0) }) }
        if let image = environment.image { out["image"] = .string(image) }
        guard environment.kind == .python else { return .object(out) }
        out["packages"] = .array(environment.requirements.requirements.map { .string($0.installArgument) })
        guard enabled else {
            out["state"] = "pool default (this site builds no environments)"
            return .object(out)
        }
        let id = id(for: environment.requirements)
        out["id"] = .string(id)
        guard let entry = entries[id] else {
            out["state"] = "not built yet (it is built on the first run)"
            return .object(out)
        }
        for (k, v) in entry.json.objectValue ?? [:] where k != "id" && k != "packages" { out[k] = v }
        return .object(out)
    }

    /// Removes environments no servable uses any more and nobody used for `gc_after_days`.
    public func collectGarbage(referenced: Set<String>, now: Date = Date()) async -> [String] {
        let cutoff = now.addingTimeInterval(-Double(settings.gcAfterDays) * 86_400)
        let unused = entries.values.filter { entry in
            if referenced.contains(entry.id) { return false }
            if case .building = entry.status { return false }
            return (entry.lastUsed ?? entry.builtAt ?? .distantPast) < cutoff
        }.map(\.id)
        let root = self.root
        for id in unused {
            entries.removeValue(forKey: id)
            try? await BlockingIO.run { () throws(DLHubError) in Self.remove(id, in: root) }
            logger.info("removed an unused environment", metadata: ["environment.id": "\(id)"])
        }
        return unused
    }

    // MARK: Building

    private func schedule(_ id: String, for user: String) {
        pending.append((id, user))
        startPending()
    }

    private func startPending() {
        while building < Self.maximumConcurrentBuilds, !pending.isEmpty {
            let next = pending.remove(at: Self.nextBuild(pending.map(\.user), lastStart: lastStart))
            starts += 1
            lastStart[next.user] = starts
            if lastStart.count > 4 * pending.count + 1024 {
                let waiting = Set(pending.map(\.user))
                lastStart = lastStart.filter { waiting.contains($0.key) }
            }
            guard let entry = entries[next.id] else { continue }
            building += 1
            Task { await self.build(entry) }
        }
    }

    /// Which waiting build starts next: that of the user whose latest build started longest ago
    /// (or never), oldest first within a user, so that one user's hundred builds do not stand in
    /// front of another's one (found by reading the store: it was first come, first served).
    static func nextBuild(_ users: [String], lastStart: [String: UInt64]) -> Int {
        var best = 0
        for i in users.indices.dropFirst() where (lastStart[users[i]] ?? 0) < (lastStart[users[best]] ?? 0) { best = i }
        return best
    }

    private func build(_ entry: Entry) async {
        let plan = BuildPlan(
            directory: root + "/" + entry.id, requirements: entry.requirements, settings: settings, uv: uv, baseVersion: baseVersion,
            cache: settings.cache ?? root + "/.cache")
        logger.info(
            "building a servable environment",
            metadata: [
                "environment.id": "\(entry.id)", "environment.packages": "\(entry.requirements.requirements.map(\.installArgument))",
            ])
        builds.increment()
        let started = Date()
        let outcome: Result<String, DLHubError>
        do throws(DLHubError) {
            outcome = .success(try await BlockingIO.run { () throws(DLHubError) in try plan.run() })
        } catch {
            outcome = .failure(error)
        }
        building -= 1
        let status: Status
        switch outcome {
        case .success(let interpreter):
            status = .ready(interpreter: interpreter)
            entries[entry.id]?.builtAt = Date()
            entries[entry.id]?.buildSeconds = Date().timeIntervalSince(started)
            logger.info(
                "servable environment ready",
                metadata: ["environment.id": "\(entry.id)", "environment.seconds": "\(Int(Date().timeIntervalSince(started)))"])
        case .failure(let error):
            buildFailures.increment()
            status = .failed(error.message)
            logger.warning(
                "servable environment failed to build", metadata: ["environment.id": "\(entry.id)", "error": "\(error.message)"])
        }
        entries[entry.id]?.status = status
        startPending()
        await listener?(entry.id, status)
    }

    /// What a build runs; pure data, so it can run on the blocking queue.
    struct BuildPlan: Sendable {
        var directory: String
        var requirements: PythonRequirements
        var settings: EnvironmentSettings
        var uv: String?
        var baseVersion: String
        var cache: String

        /// Builds the environment; returns its interpreter.
        func run() throws(DLHubError) -> String {
            let fm = FileManager.default
            let root = (directory as NSString).deletingLastPathComponent
            let id = (directory as NSString).lastPathComponent
            Self.clear(directory)
            try? fm.removeItem(atPath: root + "/" + id + ".failed.json")
            var env = [
                "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": ProcessInfo.processInfo.environment["HOME"] ?? "/tmp", "LANG": "C.UTF-8",
            ]
            // The site's way to the package index: proxies and certificate authorities.
            for (k, v) in NetworkEnvironment.passedThrough(ProcessInfo.processInfo.environment) { env[k] = v }
            let packages = requirements.requirements.map(\.installArgument)
            var index: [String] = []
            if let url = settings.packageIndex { index = ["--index-url", url] }
            let steps: [(String, [String])]
            if let uv {
                env["UV_CACHE_DIR"] = cache
                env["UV_PYTHON_DOWNLOADS"] = "never"
                env["UV_NO_PROGRESS"] = "1"
                // The system's certificate store, which holds the site's own authorities.
                if env["UV_NATIVE_TLS"] == nil { env["UV_NATIVE_TLS"] = "1" }
                steps = [
                    (uv, ["venv", "--quiet", "--python", settings.basePython, directory]),
                    (uv, ["pip", "install", "--python", directory + "/bin/python", "--only-binary", ":all:"] + index + ["--"] + packages),
                ]
            } else {
                env["PIP_CACHE_DIR"] = cache
                steps = [
                    (settings.basePython, ["-m", "venv", directory]),
                    (
                        directory + "/bin/python",
                        ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--only-binary", ":all:"] + index + ["--"]
                            + packages
                    ),
                ]
            }
            func fail(_ message: String) -> DLHubError {
                Self.clear(directory)
                let failure: JSONValue = ["error": .string(message), "at": .string(ISO8601DateFormatter().string(from: Date()))]
                _ = fm.createFile(atPath: root + "/" + id + ".failed.json", contents: Data(failure.encoded(pretty: true)))
                return DLHubError(.unavailable, message)
            }
            let deadline = Date().addingTimeInterval(Double(settings.buildTimeoutSeconds))
            // What the environment held before the install: the install may add to site-packages,
            // bin/ and include/, and change nothing else (EnvironmentAudit).
            var created: [String: EnvironmentAudit.Node] = [:]
            for (step, (program, arguments)) in steps.enumerated() {
                let result = try ProcessRunner.run(program, arguments, environment: env, timeout: max(1, deadline.timeIntervalSinceNow))
                guard result.status == 0, !result.timedOut else {
                    let what = result.timedOut ? "did not finish within \(settings.buildTimeoutSeconds) s" : "failed"
                    throw fail(
                        "building the Python environment for \(packages.joined(separator: " ")) \(what): \(Self.essence(result.output))")
                }
                if step == 0 { created = EnvironmentAudit.snapshot(directory) }
            }
            let reached = EnvironmentAudit.violations(before: created, after: EnvironmentAudit.snapshot(directory))
            if let first = reached.first {
                let owner = EnvironmentAudit.owner(of: first, in: directory).map { "the package \($0)" } ?? "a package"
                let more =
                    reached.count > 1 ? " (and \(reached.count - 1) more: \(reached.dropFirst().prefix(5).joined(separator: ", ")))" : ""
                throw fail(
                    "building the Python environment for \(packages.joined(separator: " ")) was refused: \(owner) installs \(first)\(more), outside the environment's site-packages, scripts and headers. A package may not write the environment's own files; leave it out of the dependencies or use a release of it without such data files"
                )
            }
            let record: JSONValue = [
                "id": .string(id), "python": .string(settings.basePython), "python_version": .string(baseVersion),
                "python_real": .string(Self.realPath(settings.basePython)),
                "packages": requirements.canonical, "index_url": settings.packageIndex.map { .string($0) } ?? .null,
                "installer": .string(uv == nil ? "pip" : "uv"), "built_at": .string(ISO8601DateFormatter().string(from: Date())),
            ]
            // Written last: an environment without it is half-built and is removed at the next start.
            let temporary = directory + "/." + Self.marker(id)
            guard fm.createFile(atPath: temporary, contents: Data(record.encoded(pretty: true))),
                rename(temporary, directory + "/" + EnvironmentStore.marker) == 0
            else {
                Self.clear(directory)
                throw DLHubError(.internal, "cannot finish the environment \(directory): \(String(cString: strerror(errno)))")
            }
            _ = try? ProcessRunner.run("/bin/chmod", ["-R", "a+rX", directory], environment: [:], timeout: 120)
            return directory + "/bin/python"
        }

        static func marker(_ id: String) -> String { "\(id)-\(EnvironmentStore.marker)" }

        /// `path` with every link resolved (the Python a pilot checks `bin/python` against).
        static func realPath(_ path: String) -> String {
            guard let resolved = realpath(path, nil) else { return path }
            defer { free(resolved) }
            return String(cString: resolved)
        }

        static func clear(_ directory: String) { try? FileManager.default.removeItem(atPath: directory) }

        /// The installer's own words, without noise: its last lines.
        static func essence(_ output: String) -> String {
            let lines = output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            let text = lines.suffix(12).joined(separator: "\n")
            return text.isEmpty ? "(no output)" : text
        }
    }

    // MARK: Disk

    /// Environments on disk: complete ones and failed ones; half-built ones are removed.
    static func scan(_ root: String) -> [String: Entry] {
        let fm = FileManager.default
        var out: [String: Entry] = [:]
        for item in (try? fm.contentsOfDirectory(atPath: root)) ?? [] where item.hasPrefix("py-") {
            let path = root + "/" + item
            if item.hasSuffix(".failed.json") {
                let id = String(item.dropLast(".failed.json".count))
                guard let data = fm.contents(atPath: path), let json = try? JSONValue.parse(Array(data)) else { continue }
                let requirements = out[id]?.requirements ?? PythonRequirements()
                out[id] = Entry(id: id, requirements: requirements, status: .failed(json["error"]?.stringValue ?? "the build failed"))
                continue
            }
            guard let data = fm.contents(atPath: path + "/" + marker), let json = try? JSONValue.parse(Array(data)) else {
                try? fm.removeItem(atPath: path)  // half-built
                continue
            }
            let requirements = PythonRequirements(
                (json["packages"]?.arrayValue ?? []).compactMap { pair in
                    guard let parts = pair.arrayValue, parts.count == 2, let name = parts[0].stringValue, let spec = parts[1].stringValue
                    else { return nil }
                    return PythonRequirements.Requirement(name: name, specifier: spec)
                })
            let builtAt = json["built_at"]?.stringValue.flatMap { ISO8601DateFormatter().date(from: $0) }
            out[item] = Entry(id: item, requirements: requirements, status: .ready(interpreter: path + "/bin/python"), builtAt: builtAt)
        }
        return out
    }

    static func remove(_ id: String, in root: String) {
        try? FileManager.default.removeItem(atPath: root + "/" + id)
        try? FileManager.default.removeItem(atPath: root + "/" + id + ".failed.json")
    }
}

extension EnvironmentStore.Entry {
    /// What `GET /v1/environments` shows.
    public var json: JSONValue {
        var out: [String: JSONValue] = [
            "id": .string(id), "packages": .array(requirements.requirements.map { .string($0.installArgument) }),
            "built_at": builtAt.map { .string(ISO8601DateFormatter().string(from: $0)) } ?? .null,
            "last_used": lastUsed.map { .string(ISO8601DateFormatter().string(from: $0)) } ?? .null,
        ]
        switch status {
        case .ready(let interpreter):
            out["state"] = "ready"
            out["interpreter"] = .string(interpreter)
        case .building(let since):
            out["state"] = "building"
            out["building_for_s"] = .int(Int64(Date().timeIntervalSince(since)))
        case .failed(let message):
            out["state"] = "failed"
            out["error"] = .string(message)
        }
        return .object(out)
    }
}
