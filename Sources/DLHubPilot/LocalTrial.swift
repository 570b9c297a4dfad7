import DLHubCore
import Foundation

/// `dlhub test`: one input through a servable directory that is not published, in a worker
/// started exactly as a pilot starts one (same worker shim, same sandbox, same limits), on this
/// node. No Slurm job, no service, nothing written to the registry.
public enum LocalTrial {
    public struct Settings: Sendable {
        /// The interpreter for Python servables (the pool's default worker Python on the cluster).
        public var python: String
        /// `dlhub_worker.py`, as the pilot uses it.
        public var workerScript: String
        public var isolation: IsolationMode
        /// Longest wait for the worker to load (its `timeout` bounds the run itself).
        public var loadTimeout: Double

        public init(python: String, workerScript: String, isolation: IsolationMode = .bubblewrap, loadTimeout: Double = 300) {
            self.python = python
            self.workerScript = workerScript
            self.isolation = isolation
            self.loadTimeout = loadTimeout
        }
    }

    public struct Outcome: Sendable {
        /// Whether the worker loaded the servable.
        public var loaded: Bool
        public var output: JSONValue?
        /// The worker's error for the input, or why it could not load.
        public var error: String?
        /// What the worker wrote to stderr: load messages and tracebacks.
        public var log: String
        /// How the worker ran (`bubblewrap`, `none`).
        public var sandbox: String
        /// Things that differ from how the cluster will run it (the environment it declares).
        public var notes: [String]
    }

    /// Checks the directory as publishing would, then runs `input` through it.
    public static func run(
        directory: String, input: JSONValue, parameters: [String: JSONValue], settings: Settings
    ) throws(DLHubError) -> Outcome {
        let root = URL(fileURLWithPath: directory).standardizedFileURL.path
        let metadataFile = ["servable.json", "dlhub.json"].map { root + "/" + $0 }.first { FileManager.default.fileExists(atPath: $0) }
        guard let metadataFile, let data = FileManager.default.contents(atPath: metadataFile) else {
            throw DLHubError(.invalidMetadata, "\(directory) has no servable.json; make one with `dlhub init`")
        }
        let document: JSONValue
        do { document = try JSONValue.parse(Array(data)) } catch {
            throw DLHubError(.invalidMetadata, "\(metadataFile) is not valid JSON: \(error)")
        }
        let metadata = try ServableMetadata.validate(document, files: files(under: root))
        if let problem = metadata.input.check(input) {
            throw DLHubError(.invalidInput, "the input does not fit what the servable declares: \(problem)")
        }
        var notes: [String] = []
        var environment = WorkerEnvironment()
        switch metadata.environment.kind {
        case .python:
            notes.append(
                "on the cluster this servable runs in an environment the service builds with \(metadata.environment.requirements.requirements.map { $0.name + $0.specifier }.joined(separator: " ")); here it runs with \(settings.python)"
            )
        case .modules: environment.modules = metadata.environment.modules
        case .container: environment.image = metadata.environment.image
        case .poolDefault: break
        }
        environment.interpreter = settings.python

        var launcherSettings = WorkerLauncher.Settings()
        launcherSettings.isolation = settings.isolation
        launcherSettings.python = settings.python
        launcherSettings.workerScript = settings.workerScript
        launcherSettings.maxWorkers = 1
        let launcher = WorkerLauncher(settings: launcherSettings)
        let mode = metadata.environment.kind == .container ? IsolationMode.apptainer : settings.isolation
        if case .unavailable(_, let reason) = launcher.status, mode != .none {
            throw DLHubError(
                .unavailable, "the worker sandbox does not work here: \(reason). Try it without one: dlhub test --isolation none")
        }
        // The caller's own home is where their model usually lives: it is not hidden from their own trial.
        var pilotEnvironment = ProcessInfo.processInfo.environment
        pilotEnvironment.removeValue(forKey: "HOME")
        let spec = ServableSpec(key: "trial", digest: "trial", directory: root, metadata: document, environment: environment)
        let launch: WorkerLauncher.Launch
        do { launch = try launcher.launch(spec, metadata, gpus: [], pilotEnvironment: pilotEnvironment) } catch {
            throw DLHubError(.workerFailed, "cannot start a worker: \(error)")
        }
        let worker: WorkerProcess
        do {
            worker = try WorkerProcess(
                launch: launch, id: "trial", gpus: [], startTimeout: settings.loadTimeout, maxLineBytes: 64 << 20, maxProcesses: 1024,
                copyingStderr: .max, label: "trial")
        } catch let failure as WorkerProcess.Failure {
            var log = ""
            if case .notReady(_, let stderr) = failure { log = stderr }
            if case .exited(_, let stderr) = failure { log = stderr }
            return Outcome(loaded: false, output: nil, error: failure.description, log: log, sandbox: mode.rawValue, notes: notes)
        } catch {
            throw DLHubError(.workerFailed, "cannot start a worker: \(error)")
        }
        defer { worker.stop() }
        let request: JSONValue = ["batch": 1, "parameters": .object(parameters), "inputs": [input]]
        let exchanged: (reply: [UInt8], log: String)
        do { exchanged = try worker.exchange(request.encoded(), timeout: metadata.timeoutSeconds) } catch {
            return Outcome(loaded: true, output: nil, error: "\(error)", log: worker.loadLog, sandbox: mode.rawValue, notes: notes)
        }
        let log = worker.loadLog + exchanged.log
        guard let reply = try? JSONValue.parse(exchanged.reply), let result = reply["results"]?.arrayValue?.first else {
            return Outcome(
                loaded: true, output: nil, error: "the worker broke the protocol: its reply was not one result per input", log: log,
                sandbox: mode.rawValue, notes: notes)
        }
        if let error = result["error"]?.stringValue {
            return Outcome(loaded: true, output: nil, error: error, log: log, sandbox: mode.rawValue, notes: notes)
        }
        return Outcome(loaded: true, output: result["output"] ?? .null, error: nil, log: log, sandbox: mode.rawValue, notes: notes)
    }

    /// The directory's files, relative to it (what an upload of it would hold).
    static func files(under root: String) -> Set<String> {
        var out: Set<String> = []
        guard let walker = FileManager.default.enumerator(atPath: root) else { return out }
        while let path = walker.nextObject() as? String {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: root + "/" + path, isDirectory: &isDirectory), !isDirectory.boolValue {
                out.insert(path)
            }
        }
        return out
    }
}
