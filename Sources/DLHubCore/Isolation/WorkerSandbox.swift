/// One worker's view of the world, in host paths, and the command lines that give it that view.
///
/// A sandboxed worker sees, read-only, its own servable at `/servable`, the worker shim at
/// `/dlhub/worker.py`, its environment (interpreter, packages, modules) at the paths it was built
/// at, and the system's software (`/usr`, a few files from `/etc`); a private `/scratch` (its
/// `HOME`), `/tmp` and `/dev/shm`, each a tmpfs of `limits.tmpBytes`, so that what a worker can
/// write is bounded whatever it does (a node-local scratch directory on disk was not). Nothing else: not the registry, the service's state, munge,
/// other processes, the network (unless its pool allows it) or anyone's home. Pure: the pilot
/// gathers the paths and runs what this renders.
public struct WorkerSandbox: Sendable, Equatable {
    /// What runs inside.
    public enum Program: Sendable, Equatable {
        /// The Python worker shim, with this interpreter (a host path, visible at the same path).
        case python(interpreter: String, shim: String)
        /// An executable servable's own command; a relative program is inside the servable.
        case executable([String])
    }

    public var program: Program
    /// The servable's version directory in the registry.
    public var servableDirectory: String
    /// Host directories the worker may read, visible at the same paths: its environment,
    /// directories that loaded modules put on its paths, site software trees.
    public var readOnlyPaths: [String]
    /// A private writable directory on node-local disk, removed when the worker exits.
    public var scratchDirectory: String
    /// The worker's whole environment (nothing is inherited from the pilot).
    public var environment: [String: String]
    /// Device nodes the worker may use (its GPUs).
    public var devices: [String]
    /// Whether the worker keeps the node's network (a pool setting); off by default.
    public var network: Bool
    public var limits: WorkerLimits

    public static let servableMount = "/servable"
    public static let shimMount = "/dlhub/worker.py"
    public static let scratchMount = "/scratch"

    public init(
        program: Program, servableDirectory: String, readOnlyPaths: [String] = [], scratchDirectory: String,
        environment: [String: String] = [:], devices: [String] = [], network: Bool = false, limits: WorkerLimits = WorkerLimits()
    ) {
        self.program = program
        self.servableDirectory = servableDirectory
        self.readOnlyPaths = readOnlyPaths
        self.scratchDirectory = scratchDirectory
        self.environment = environment
        self.devices = devices
        self.network = network
        self.limits = limits
    }

    /// The command as the worker runs it, with the servable at `servable` and the shim at `shim`.
    func command(servable: String, shim shimPath: String?) -> [String] {
        switch program {
        case .python(let interpreter, let shim):
            return [interpreter, shimPath ?? shim, servable]
        case .executable(let parts):
            var parts = parts
            if let first = parts.first, !first.hasPrefix("/") { parts[0] = servable + "/" + first }
            return parts
        }
    }

    /// Environment variables inside the sandbox.
    func sandboxEnvironment(servable: String, home: String) -> [String: String] {
        var env = environment
        env["DLHUB_SERVABLE_DIR"] = servable
        env["HOME"] = home
        env["TMPDIR"] = "/tmp"
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        if env["PATH"] == nil { env["PATH"] = "/usr/local/bin:/usr/bin:/bin" }
        if env["LANG"] == nil { env["LANG"] = "C.UTF-8" }
        return env
    }

    /// `prlimit ... -- bwrap ... -- command`: the worker in a bubblewrap sandbox.
    ///
    /// `root` says how the host lays out its system directories; `bubblewrap` and `prlimit` are
    /// the programs' paths; `disableUserNamespaces` adds `--disable-userns` where bwrap supports it.
    public func bubblewrapCommand(bubblewrap: String, prlimit: String?, root: RootLayout, disableUserNamespaces: Bool) -> [String] {
        var a = [bubblewrap, "--die-with-parent", "--new-session", "--unshare-all"]
        if network { a.append("--share-net") }
        // `--disable-userns` needs a user namespace of bwrap's own: `--unshare-all` only tries for
        // one, and without `--unshare-user` bwrap refused the option, so the pilot's check turned it
        // off and workers could make user namespaces (found by the red team: `unshare -Ur id`).
        if disableUserNamespaces { a += ["--unshare-user", "--disable-userns"] }
        a += ["--ro-bind", "/usr", "/usr"]
        for (path, target) in root.links.sorted(by: { $0.key < $1.key }) { a += ["--symlink", target, path] }
        for path in root.directories.sorted() { a += ["--ro-bind", path, path] }
        for path in root.etcFiles.sorted() { a += ["--ro-bind-try", path, path] }
        if network {
            for path in ["/etc/resolv.conf", "/etc/ssl", "/etc/ca-certificates"] { a += ["--ro-bind-try", path, path] }
        }
        a += ["--proc", "/proc", "--dev", "/dev"]
        let size = String(limits.tmpBytes)
        a += ["--size", size, "--tmpfs", "/tmp", "--size", size, "--tmpfs", "/dev/shm"]
        a += ["--ro-bind", servableDirectory, Self.servableMount]
        if case .python(_, let shim) = program { a += ["--ro-bind", shim, Self.shimMount] }
        a += ["--size", size, "--tmpfs", Self.scratchMount]
        for path in Set(readOnlyPaths).sorted() where !path.hasPrefix("/usr/") && path != "/usr" { a += ["--ro-bind", path, path] }
        for device in devices.sorted() { a += ["--dev-bind", device, device] }
        // Nothing else is writable: bwrap's root and its /dev are tmpfs mounts without a size
        // (found by the red team: 400 MB each in /, /etc and /dev past a 300 MB memory limit).
        a += ["--remount-ro", "/", "--remount-ro", "/dev"]
        a.append("--clearenv")
        for (k, v) in sandboxEnvironment(servable: Self.servableMount, home: Self.scratchMount).sorted(by: { $0.key < $1.key }) {
            a += ["--setenv", k, v]
        }
        a += ["--chdir", Self.servableMount, "--"]
        a += command(servable: Self.servableMount, shim: Self.shimMount)
        return limitsPrefix(prlimit) + a
    }

    /// The worker with no sandbox (`isolation: none`): host paths, its own environment only.
    public func directCommand(prlimit: String?) -> (command: [String], environment: [String: String]) {
        (
            limitsPrefix(prlimit) + command(servable: servableDirectory, shim: nil),
            sandboxEnvironment(servable: servableDirectory, home: scratchDirectory)
        )
    }

    func limitsPrefix(_ prlimit: String?) -> [String] {
        guard let prlimit else { return [] }
        var a = [prlimit, "--nofile=\(limits.openFiles)", "--nproc=\(limits.processes)"]
        if let memory = limits.memoryBytes { a.append("--as=\(memory)") }
        return a + ["--"]
    }
}

/// Per-worker resource limits.
public struct WorkerLimits: Sendable, Equatable {
    /// Address space, in bytes; nil for none.
    public var memoryBytes: UInt64?
    public var openFiles: Int
    public var processes: Int
    /// Size of each of the private `/tmp`, `/dev/shm` and `/scratch` (tmpfs mounts).
    public var tmpBytes: UInt64

    public init(memoryBytes: UInt64? = nil, openFiles: Int = 4096, processes: Int = 1024, tmpBytes: UInt64 = 1 << 30) {
        self.memoryBytes = memoryBytes
        self.openFiles = openFiles
        self.processes = processes
        self.tmpBytes = tmpBytes
    }
}

/// How the host lays out its root: which system directories are links into `/usr` (merged
/// `/usr`, as on Debian 12) and which are real, and which files of `/etc` a worker may read.
public struct RootLayout: Sendable, Equatable {
    /// `/bin` -> `usr/bin` and the like.
    public var links: [String: String]
    /// System directories outside `/usr` that are real directories on this host.
    public var directories: [String]
    /// Files and directories of `/etc` a worker may read (nothing secret: no munge key, no slurm.conf).
    public var etcFiles: [String]

    public static let systemDirectories = ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]
    public static let defaultEtcFiles = [
        "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/hosts", "/etc/localtime", "/etc/ld.so.cache", "/etc/ld.so.conf",
        "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/os-release", "/etc/mime.types",
    ]

    public init(links: [String: String], directories: [String], etcFiles: [String] = RootLayout.defaultEtcFiles) {
        self.links = links
        self.directories = directories
        self.etcFiles = etcFiles
    }
}
