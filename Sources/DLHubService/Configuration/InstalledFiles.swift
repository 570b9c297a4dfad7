import DLHubCore
import Foundation

/// Where the pilot executable, the pilot job template and the Python worker are: from the
/// configuration, else next to `dlhubd` in an installed prefix (`bin/`, `share/dlhub/`), else in
/// the source tree `dlhubd` was built from.
struct InstalledFiles {
    var pilot: String
    var template: String
    var workerScript: String

    init(configuration: ServiceConfiguration) throws(DLHubError) {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let bin = URL(fileURLWithPath: exe).deletingLastPathComponent()
        // An install (<prefix>/bin next to <prefix>/share/dlhub), or a build in the checkout
        // (.build/<triple>/<config>, whose assets are in share/dlhub/ and python/).
        let roots = [
            "../share/dlhub", "../../../share/dlhub", "../../share/dlhub", "../../..", "../..",
        ].map { bin.appendingPathComponent($0).standardizedFileURL.path }
        func find(_ relative: String, configured: String?, what: String, setting: String) throws(DLHubError) -> String {
            if let configured { return configured }
            for root in roots where FileManager.default.fileExists(atPath: root + "/" + relative) { return root + "/" + relative }
            throw DLHubError(.internal, "cannot find the \(what) (\(relative)) near \(bin.path); set \(setting) in the configuration")
        }
        pilot = configuration.pilotExecutable ?? bin.appendingPathComponent("dlhub-pilot").path
        guard FileManager.default.isExecutableFile(atPath: pilot) else {
            throw DLHubError(
                .internal, "the pilot executable \(pilot) is missing; install dlhub-pilot next to dlhubd or set pilot_executable")
        }
        template = try find(
            "slurm/pilot.sbatch.template", configured: configuration.pilotTemplate, what: "pilot job template", setting: "pilot_template")
        workerScript = try find(
            "python/dlhub_worker.py", configured: configuration.workerScript, what: "Python worker", setting: "worker_script")
    }
}
