import DLHubCore
import Foundation

/// Turns a servable into the command that starts its worker, isolated the way the site wants:
/// the one place where a worker's view of the node is decided (see `WorkerSandbox`).
struct WorkerLauncher: Sendable {
    struct Settings: Sendable {
        var isolation: IsolationMode = .bubblewrap
        var bubblewrap = "bwrap"
        /// Site software trees workers may read.
        var readOnlyPaths: [String] = []
        var neverBound: [String] = []
        var containerCommand = ApptainerCommand.defaultTemplate
        var workerTmpMB = 1024
        /// Whether this pilot's pool lets workers keep the network.
        var workerNetwork = false
        /// The pool's default interpreter for Python servables.
        var python = "python3"
        var workerScript = ""
        /// Node-local directory for workers' scratch directories.
        var scratchRoot = NSTemporaryDirectory()
        /// The pilot's memory (MB): a worker that declares none may use up to this much.
        var memoryMB = 0
        /// Workers this pilot may keep: the process limit makes room for all of them.
        var maxWorkers = 8

        /// The process limit given to each worker. RLIMIT_NPROC counts every process and thread
        /// of the service account on the node, not the worker's own, so it must leave room for
        /// the pilot's other workers (found at 500 workers: a fixed 1024 made their sandboxes
        /// fail to fork). It still stops a fork bomb at a bounded size; a per-worker count
        /// needs a cgroup `pids.max`, which the service account is not delegated here.
        /// It leaves room for every worker at its own bound (`workerMaxProcesses`, which the
        /// pilot enforces per worker: see `ProcessWatch`).
        var processLimit: Int { max(1024 + 64 * max(1, maxWorkers), 256 + workerMaxProcesses * max(1, maxWorkers)) }
        /// Processes and threads one worker may run at once.
        var workerMaxProcesses = 128
    }

    /// A worker ready to start.
    struct Launch: Sendable {
        var command: [String]
        var environment: [String: String]
        /// The working directory to start it in (a sandbox sets its own).
        var directory: String
        /// Removed when the worker exits.
        var scratch: String
    }

    let settings: Settings
    /// What the check at start found.
    let status: IsolationStatus
    let root: RootLayout
    let disableUserNamespaces: Bool
    let bubblewrapPath: String?
    let prlimitPath: String?

    /// Checks the sandbox once, at pilot start.
    init(settings: Settings) {
        self.settings = settings
        root = Self.rootLayout()
        prlimitPath = Self.which("prlimit")
        let bwrap = Self.which(settings.bubblewrap)
        bubblewrapPath = bwrap
        switch settings.isolation {
        case .none:
            status = .available(.none)
            disableUserNamespaces = false
        case .bubblewrap, .apptainer:
            guard let bwrap else {
                status = .unavailable(
                    .bubblewrap, reason: "\(settings.bubblewrap) is not installed (Debian: apt-get install bubblewrap)")
                disableUserNamespaces = false
                return
            }
            // Prefer also forbidding new user namespaces inside the sandbox, where bwrap and the kernel allow it.
            if let failure = Self.probe(bwrap, root: root, disableUserNamespaces: true) {
                if Self.probe(bwrap, root: root, disableUserNamespaces: false) == nil {
                    status = .available(settings.isolation)
                    disableUserNamespaces = false
                } else {
                    status = .unavailable(.bubblewrap, reason: failure)
                    disableUserNamespaces = false
                }
            } else {
                status = .available(settings.isolation)
                disableUserNamespaces = true
            }
        }
    }

    /// Runs `true` in a sandbox like a worker's; nil when that works, else bwrap's complaint.
    static func probe(_ bwrap: String, root: RootLayout, disableUserNamespaces: Bool) -> String? {
        let scratch = NSTemporaryDirectory() + "/dlhub-probe-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let sandbox = WorkerSandbox(
            program: .executable(["/usr/bin/true"]), servableDirectory: scratch, scratchDirectory: scratch, limits: WorkerLimits())
        let command = sandbox.bubblewrapCommand(bubblewrap: bwrap, prlimit: nil, root: root, disableUserNamespaces: disableUserNamespaces)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.environment = [:]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        do { try process.run() } catch { return "cannot run \(bwrap): \(error.localizedDescription)" }
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        if process.terminationStatus == 0 { return nil }
        let text = message.trimmingCharacters(in: .whitespacesAndNewlines)
        return
            "\(bwrap) failed (\(text.isEmpty ? "exit status \(process.terminationStatus)" : text)); unprivileged user namespaces may be disabled on this node"
    }

    /// The command for a worker of `spec`, pinned to `gpus`.
    func launch(_ spec: ServableSpec, _ metadata: ServableMetadata, gpus: [String], pilotEnvironment: [String: String]) throws -> Launch {
        let mode: IsolationMode = spec.environment.image != nil ? .apptainer : settings.isolation
        if case .unavailable(let wanted, let reason) = status, mode != .none {
            throw WorkerProcess.Failure.protocolError(
                "the site runs workers in a \(wanted.rawValue) sandbox, but it does not work on node \(ProcessInfo.processInfo.hostName): \(reason). Ask the site admin to fix the node (or, knowingly, to set isolation to none)"
            )
        }
        var environment: [String: String] = [:]
        let threads = String(max(1, metadata.resources.cores))
        for k in ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"] { environment[k] = threads }
        var readOnly = settings.readOnlyPaths
        var path = ["/usr/local/bin", "/usr/bin", "/bin"]

        let program: WorkerSandbox.Program
        if metadata.loader == .executable {
            let parts = metadata.methodDetails["command"]?.arrayValue?.compactMap(\.stringValue) ?? []
            guard !parts.isEmpty else { throw WorkerProcess.Failure.protocolError("the servable declares no command") }
            program = .executable(parts)
        } else {
            let interpreter =
                Self.which(spec.environment.interpreter ?? settings.python) ?? (spec.environment.interpreter ?? settings.python)
            guard FileManager.default.isExecutableFile(atPath: interpreter) else {
                throw WorkerProcess.Failure.protocolError("the Python interpreter \(interpreter) is missing on this node")
            }
            readOnly += try Self.interpreterPaths(interpreter)
            path.insert((interpreter as NSString).deletingLastPathComponent, at: 0)
            program = .python(interpreter: interpreter, shim: settings.workerScript)
        }
        if !spec.environment.modules.isEmpty {
            let modules = try ModuleEnvironment.load(spec.environment.modules, base: pilotEnvironment)
            for (k, v) in modules.variables where k != "PATH" { environment[k] = v }
            if let added = modules.variables["PATH"] { path = added.split(separator: ":").map(String.init) + path }
            readOnly += modules.directories.filter { FileManager.default.fileExists(atPath: $0) }
        }
        environment["PATH"] = path.joined(separator: ":")
        let pinning = GPUAssignment.pinning(gpus)
        for (k, v) in pinning.environment { environment[k] = v }
        let devices = pinning.deviceNodes.filter { FileManager.default.fileExists(atPath: $0) }

        let forbidden =
            Self.forbiddenRoots(servableDirectory: spec.directory, pilotEnvironment: pilotEnvironment) + settings.neverBound
        readOnly = Self.bindable(readOnly, forbidden: forbidden)
        let scratch = try Self.makeScratch(in: settings.scratchRoot)
        let memoryMB = metadata.resources.memoryMB > 0 ? metadata.resources.memoryMB : settings.memoryMB
        let sandbox = WorkerSandbox(
            program: program, servableDirectory: spec.directory, readOnlyPaths: readOnly, scratchDirectory: scratch,
            environment: environment, devices: devices, network: settings.workerNetwork || spec.environment.network,
            limits: WorkerLimits(
                memoryBytes: memoryMB > 0 ? UInt64(memoryMB) * 1_048_576 : nil, processes: settings.processLimit,
                tmpBytes: UInt64(max(1, settings.workerTmpMB)) * 1_048_576))
        switch mode {
        case .none:
            let direct = sandbox.directCommand(prlimit: prlimitPath)
            return Launch(command: direct.command, environment: direct.environment, directory: spec.directory, scratch: scratch)
        case .bubblewrap:
            guard let bwrap = bubblewrapPath else { throw WorkerProcess.Failure.protocolError("bubblewrap is missing") }
            return Launch(
                command: sandbox.bubblewrapCommand(
                    bubblewrap: bwrap, prlimit: prlimitPath, root: root, disableUserNamespaces: disableUserNamespaces),
                environment: [:], directory: scratch, scratch: scratch)
        case .apptainer:
            guard let image = spec.environment.image else { throw WorkerProcess.Failure.protocolError("no container image") }
            guard FileManager.default.fileExists(atPath: image) else {
                try? FileManager.default.removeItem(atPath: scratch)
                throw WorkerProcess.Failure.protocolError(
                    "the container image \(image) does not exist on node \(ProcessInfo.processInfo.hostName); publish a version that names an image on the shared filesystem"
                )
            }
            let rendered = ApptainerCommand(template: settings.containerCommand).render(image: image, sandbox: sandbox)
            guard let program = rendered.command.first, Self.which(program) != nil else {
                try? FileManager.default.removeItem(atPath: scratch)
                throw WorkerProcess.Failure.protocolError(
                    "the servable runs in a container, but \(rendered.command.first ?? "apptainer") is not installed on node \(ProcessInfo.processInfo.hostName)"
                )
            }
            var command = rendered.command
            command[0] = Self.which(program) ?? program
            return Launch(command: command, environment: rendered.environment, directory: scratch, scratch: scratch)
        }
    }

    /// Directories an interpreter needs: its virtual environment and the Python it was made from.
    ///
    /// Decided from the interpreter itself (the file its links end at), never from `pyvenv.cfg`,
    /// which a package's data files could have written (`home = /proc/1` bound the node's /proc
    /// into workers). An environment the service built carries `dlhub-environment.json`, written
    /// after its install; its `bin/python` must still lead to the Python it names.
    static func interpreterPaths(_ interpreter: String) throws -> [String] {
        let bin = (interpreter as NSString).deletingLastPathComponent
        let prefix = (bin as NSString).deletingLastPathComponent
        let real = realPath(interpreter)
        var out: [String] = []
        let fm = FileManager.default
        if fm.fileExists(atPath: prefix + "/pyvenv.cfg") { out.append(prefix) }
        if let data = fm.contents(atPath: prefix + "/dlhub-environment.json"), let manifest = try? JSONValue.parse(Array(data)) {
            let built = manifest["python_real"]?.stringValue ?? manifest["python"]?.stringValue.map(realPath) ?? ""
            guard real == built else {
                throw WorkerProcess.Failure.protocolError(
                    "the environment \(prefix) was changed after the service built it: its bin/python leads to \(real), not to \(built) it was built from. Ask the site admin to remove it (the service builds it again)"
                )
            }
        }
        out.append(((real as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent)
        return out.filter { $0 != "/" && $0 != "/usr" && !$0.hasPrefix("/usr/") }
    }

    static func realPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Bound into no sandbox whatever a file, a module or a setting says: the kernel's and the
    /// node's shared trees (a path inside `/tmp` or `/home` may be bound, never the directory
    /// itself or anything holding it).
    static let neverBound = ["/proc", "/sys", "/dev", "/run", "/var/run", "/tmp", "/var/tmp", "/home", "/root", "/etc", "/boot"]
    /// Of these, nothing inside may be bound either.
    static let neverBoundInside: Set<String> = ["/proc", "/sys", "/dev", "/run", "/var/run", "/boot"]

    /// The read-only paths that may be bound: absolute, and neither holding nor inside a
    /// forbidden root, nor holding one of `neverBound` or inside the kernel's trees.
    static func bindable(_ paths: [String], forbidden: [String]) -> [String] {
        paths.filter { candidate in
            guard candidate.hasPrefix("/") else { return false }
            let path = realPath(candidate)
            for p in [candidate, path] {
                let clean = (p as NSString).standardizingPath
                if clean == "/" { return false }
                if forbidden.contains(where: { overlaps(clean, $0) }) { return false }
                for root in neverBound where clean == root || root.hasPrefix(clean + "/") { return false }
                for root in neverBoundInside where clean.hasPrefix(root + "/") { return false }
            }
            return true
        }
    }

    /// What no worker may see even when a module or a setting names it: the registry's servables,
    /// staging area, pilot logs and `service.json` (its `environments/` area is fine), munge, the
    /// service account's home.
    static func forbiddenRoots(servableDirectory: String, pilotEnvironment: [String: String]) -> [String] {
        // <registry>/servables/<owner>/<name>/<version>
        var registry = servableDirectory
        for _ in 0..<4 { registry = (registry as NSString).deletingLastPathComponent }
        var out = ["servables", ".staging", ".pilot-logs", "service.json"].map { registry + "/" + $0 }
        out += ["/run/munge", "/var/run/munge", "/etc/munge", "/var/lib/munge"]
        if let home = pilotEnvironment["HOME"], home != "/" { out.append(home) }
        return out
    }

    /// Whether one path is the other or inside it, either way round.
    static func overlaps(_ a: String, _ b: String) -> Bool {
        let x = (a as NSString).standardizingPath, y = (b as NSString).standardizingPath
        return x == y || x.hasPrefix(y + "/") || y.hasPrefix(x + "/") || x == "/"
    }

    static func makeScratch(in root: String) throws -> String {
        let template = (root.hasSuffix("/") ? root : root + "/") + "dlhub-worker-XXXXXX"
        var bytes = Array(template.utf8CString)
        guard let made = mkdtemp(&bytes) else {
            throw WorkerProcess.Failure.protocolError("cannot make a scratch directory in \(root): \(String(cString: strerror(errno)))")
        }
        return String(cString: made)
    }

    /// How this host lays out `/bin`, `/lib` and the like.
    static func rootLayout() -> RootLayout {
        var links: [String: String] = [:]
        var directories: [String] = []
        for path in RootLayout.systemDirectories {
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: path) {
                links[path] = target
            } else {
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
                    directories.append(path)
                }
            }
        }
        return RootLayout(links: links, directories: directories)
    }

    /// `bwrap` -> `/usr/bin/bwrap`, searching PATH like a shell; nil when not found.
    static func which(_ program: String) -> String? {
        if program.contains("/") { return FileManager.default.isExecutableFile(atPath: program) ? program : nil }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") + ["/usr/bin", "/bin"] {
            let candidate = "\(dir)/\(program)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
