import Foundation

/// The built executables laid out as an install (`bin/`, `share/dlhub/`) in a world-readable
/// place, so the service account and the test users can run them wherever the checkout lives,
/// and the service account the tests run `dlhubd` as.
public enum TestInstall {
    static var environment: [String: String] { ProcessInfo.processInfo.environment }

    /// The unprivileged account `dlhubd`, its pilots and its workers run as (`scripts/service-account`).
    public static var serviceUser: String { environment["DLHUB_SERVICE_USER"] ?? "dlhub" }

    /// The default worker environment `slurm/install-deps` builds from Debian's `/usr/bin/python3`.
    public static var workerPython: String { environment["DLHUB_TEST_PYTHON"] ?? "/opt/dlhub-dev/python/bin/python" }

    /// DLHub's own SDK (`dlhub_sdk` 2.x) in a virtual environment `slurm/install-deps` builds.
    public static var sdkPython: String { environment["DLHUB_TEST_SDK_PYTHON"] ?? "/opt/dlhub-dev/sdk/bin/python" }

    /// Fails with the fix when the service account or the worker environment is missing.
    public static func require() throws {
        guard getpwnam(serviceUser) != nil else {
            throw TestSetupError(
                "the service account '\(serviceUser)' does not exist; run `sudo scripts/service-account` (the README's test command does)")
        }
        guard FileManager.default.isExecutableFile(atPath: workerPython) else {
            throw TestSetupError(
                "the worker Python \(workerPython) is missing; run `sudo slurm/install-deps` (the README's test command does)")
        }
    }

    public static func uid(_ user: String) -> uid_t? { getpwnam(user).map { $0.pointee.pw_uid } }
    public static func gid(_ user: String) -> gid_t? { getpwnam(user).map { $0.pointee.pw_gid } }

    /// Gives a directory to the service account, so `dlhubd` can create its registry and state there.
    public static func handToServiceAccount(_ path: String) throws {
        guard let uid = uid(serviceUser), let gid = gid(serviceUser) else { try require(); return }
        guard chown(path, uid, gid) == 0 else { throw TestSetupError("cannot chown \(path) to \(serviceUser)") }
    }

    /// `bin/<name>` of the test install.
    public static func executable(_ name: String) throws -> String { try prefix() + "/bin/" + name }

    /// The install prefix, made once per test process.
    public static func prefix() throws -> String {
        lock.lock()
        defer { lock.unlock() }
        if let made { return made }
        let dir = "/tmp/dlhub-test-prefix-\(getpid())"
        let fm = FileManager.default
        try? fm.removeItem(atPath: dir)
        for sub in ["bin", "share/dlhub/slurm", "share/dlhub/python"] {
            try fm.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        }
        for name in ["dlhubd", "dlhub", "dlhub-pilot"] {
            try install(try BuiltProducts.path(name), dir + "/bin/" + name, mode: 0o755)
        }
        let root = BuiltProducts.packageRoot
        try install(root + "/share/dlhub/slurm/pilot.sbatch.template", dir + "/share/dlhub/slurm/pilot.sbatch.template", mode: 0o644)
        try install(root + "/python/dlhub_worker.py", dir + "/share/dlhub/python/dlhub_worker.py", mode: 0o644)
        made = dir
        return dir
    }

    private static func install(_ source: String, _ target: String, mode: mode_t) throws {
        // A hard link is instant when the checkout is on the same filesystem; else copy.
        if link(source, target) != 0 { try FileManager.default.copyItem(atPath: source, toPath: target) }
        chmod(target, mode)
    }

    nonisolated(unsafe) private static var made: String?
    private static let lock = NSLock()
}
