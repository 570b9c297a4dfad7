/// The command line that runs a container servable's worker with Apptainer or Singularity,
/// rendered from a template the site configures.
///
/// Placeholders: `{image}` (the `.sif` file or sandbox directory), `{servable}`, `{shim}` (the
/// worker shim), `{scratch}`, and `{command}`, which stands for the whole worker command (one or
/// more words). The worker's environment goes in `APPTAINERENV_*` variables, which
/// `--cleanenv` lets through and nothing else.
public struct ApptainerCommand: Sendable, Equatable {
    public var template: [String]

    public static let defaultTemplate = [
        "apptainer", "exec", "--containall", "--cleanenv", "--no-home", "--bind", "{servable}:/servable:ro", "--bind",
        "{shim}:/dlhub/worker.py:ro", "--bind", "{scratch}:/scratch", "--pwd", "/servable", "{image}", "{command}",
    ]

    public init(template: [String] = ApptainerCommand.defaultTemplate) {
        self.template = template
    }

    /// Checks that a configured template can work: an image and the command must appear in it.
    public static func validate(_ template: [String]) throws(DLHubError) {
        guard template.contains("{command}"), template.contains(where: { $0.contains("{image}") }), let first = template.first,
            !first.contains("{")
        else {
            throw DLHubError(
                .badRequest,
                "container_command must start with the program (apptainer or singularity) and contain {image} and {command}, e.g. \(defaultTemplate)"
            )
        }
    }

    /// The command and the environment to start it with, for a worker of `sandbox` in `image`.
    ///
    /// Inside the container the interpreter is the image's own `python3`.
    public func render(image: String, sandbox: WorkerSandbox) -> (command: [String], environment: [String: String]) {
        let inner: [String]
        switch sandbox.program {
        case .python: inner = ["python3", WorkerSandbox.shimMount, WorkerSandbox.servableMount]
        case .executable: inner = sandbox.command(servable: WorkerSandbox.servableMount, shim: nil)
        }
        let shim: String
        if case .python(_, let s) = sandbox.program { shim = s } else { shim = "/dev/null" }
        let values = ["{image}": image, "{servable}": sandbox.servableDirectory, "{shim}": shim, "{scratch}": sandbox.scratchDirectory]
        var command: [String] = []
        for word in template {
            if word == "{command}" {
                command += inner
                continue
            }
            var w = word
            for (k, v) in values { w = w.replacing(k, with: v) }
            command.append(w)
        }
        var environment: [String: String] = ["PATH": "/usr/local/bin:/usr/bin:/bin"]
        let inside = sandbox.sandboxEnvironment(servable: WorkerSandbox.servableMount, home: WorkerSandbox.scratchMount)
        for (k, v) in inside where k != "PATH" { environment["APPTAINERENV_" + k] = v }
        return (sandbox.limitsPrefix(nil) + command, environment)
    }
}
