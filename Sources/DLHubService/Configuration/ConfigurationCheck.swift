import DLHubCore
import Foundation

/// `dlhubd --check-config FILE`: what an admin wants to know before a configuration goes live.
/// The file parses; the installed files, the worker Python and the registry are there; and for
/// each pool, Slurm says whether it would accept the pilot job the service would submit (the
/// same rendering, through libslurm's will-run test, nothing submitted).
public enum ConfigurationCheck {
    public struct Verdict: Sendable, Equatable {
        /// The pool, or what was checked (`files`, `python`, `registry`).
        public var subject: String
        public var ok: Bool
        public var message: String

        public var line: String { "\(ok ? "ok     " : "PROBLEM") \(subject): \(message)" }
    }

    public typealias WillRun = @Sendable (JobSubmission) async throws(DLHubError) -> (start: Date, nodes: String)

    public static func run(_ configuration: ServiceConfiguration, now: Date = Date(), willRun: WillRun) async -> [Verdict] {
        var out: [Verdict] = []
        let settings: PilotManager.Settings
        do {
            settings = try DLHubServer.pilotSettings(configuration)
            out.append(
                Verdict(
                    subject: "files", ok: true,
                    message: "pilot \(settings.pilotExecutable), worker \(settings.workerScript)"))
        } catch {
            return [Verdict(subject: "files", ok: false, message: error.message)]
        }
        let python = settings.python.contains("/") ? settings.python : "/usr/bin/" + settings.python
        out.append(
            FileManager.default.isExecutableFile(atPath: python)
                ? Verdict(subject: "python", ok: true, message: "\(settings.python) (the default worker environment)")
                : Verdict(
                    subject: "python", ok: false,
                    message: "\(settings.python) is not an executable here; make it with scripts/python-env and set python"))
        var isDirectory: ObjCBool = false
        let registry = configuration.registryRoot
        if FileManager.default.fileExists(atPath: registry, isDirectory: &isDirectory) {
            out.append(
                isDirectory.boolValue
                    ? Verdict(subject: "registry", ok: true, message: registry)
                    : Verdict(subject: "registry", ok: false, message: "\(registry) is not a directory"))
        } else {
            let parent = (registry as NSString).deletingLastPathComponent
            out.append(
                FileManager.default.isWritableFile(atPath: parent)
                    ? Verdict(subject: "registry", ok: true, message: "\(registry) (made at the first start)")
                    : Verdict(subject: "registry", ok: false, message: "\(registry) does not exist and \(parent) is not writable"))
        }
        for pool in settings.pools {
            let job = settings.script.submission(for: pool, settings: settings, service: "check-config:0", secret: "check-config")
            let asked =
                "partition \(pool.partition ?? "(default)"), \(pool.nodes) node(s)" + (pool.coresPerNode.map { ", \($0) core(s)" } ?? "")
                + ", \(pool.walltimeMinutes) min"
                + (pool.account.map { ", account \($0)" } ?? "") + (pool.qos.map { ", qos \($0)" } ?? "")
                + (pool.gres.map { ", gres \($0)" } ?? "") + (pool.constraint.map { ", constraint \($0)" } ?? "")
            do {
                let (start, nodes) = try await willRun(job)
                let when =
                    start.timeIntervalSince(now) < 60
                    ? "could start now" : "would start at \(ISO8601DateFormatter().string(from: start)) (the cluster is busy)"
                out.append(
                    Verdict(
                        subject: "pool \(pool.name)", ok: true, message: "Slurm accepts its pilot job (\(asked)); it \(when) on \(nodes)"))
            } catch {
                out.append(
                    Verdict(subject: "pool \(pool.name)", ok: false, message: "Slurm refuses its pilot job (\(asked)): \(error.message)"))
            }
        }
        return out
    }
}
