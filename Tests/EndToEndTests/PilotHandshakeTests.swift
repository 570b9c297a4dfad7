import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// The pilot side of the mutual proof: `dlhub-pilot` takes work only from the service that
/// submitted its job. Played against a fake service on loopback, with the real pilot executable
/// running as the service account.
@Suite struct PilotHandshakeTests {
    init() throws {
        try TestUsers.require()
        try TestInstall.require()
        try DevCluster.require()
    }

    /// Starts `dlhub-pilot` against a fake service that sends `frames` after the hello, with
    /// isolation off so that a worker it should never start would leave a visible mark.
    func pilotAgainstFakeService(_ reply: (PilotHello) -> [PilotFrame]) throws -> (status: Int32, stderr: String, marker: Bool) {
        let work = try TemporaryDirectory("dlhub-fake-service")
        try TestInstall.handToServiceAccount(work.path)
        let marker = work.file("worker-started")
        // A servable whose import leaves a file behind: it must never be loaded.
        let servable = work.file("registry/servables/mallory/bait/1")
        try FileManager.default.createDirectory(atPath: servable, withIntermediateDirectories: true)
        try "open(\"\(marker)\", \"w\").write(\"loaded\")\ndef run(x):\n    return x\n".write(
            toFile: servable + "/bait.py", atomically: true, encoding: .utf8)
        let metadata: JSONValue = [
            "datacite": ["titles": [["title": "bait"]]], "dlhub": ["name": "bait", "owner": "mallory", "version": 1],
            "servable": [
                "shim": "python.PythonStaticMethodServable",
                "methods": [
                    "run": [
                        "input": ["type": "string"], "output": ["type": "string"],
                        "method_details": ["module": "bait", "method_name": "run"],
                    ]
                ],
            ],
        ]
        let (listener, port) = try RawSocket.listen()
        let user = TestInstall.serviceUser
        let pilot = Process()
        pilot.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        pilot.arguments = [
            "--reuid=\(user)", "--regid=\(user)", "--init-groups", "/usr/bin/env", "-i", "PATH=/usr/bin:/bin",
            "SLURM_CONF=\(ProcessInfo.processInfo.environment["SLURM_CONF"] ?? DevCluster.defaultConf)", "SLURM_JOB_ID=999999",
            "\(PilotProof.environmentVariable)=\(PilotProof.random())", try TestInstall.executable("dlhub-pilot"),
            "--service", "127.0.0.1:\(port)", "--pool", "cpu", "--python", TestInstall.workerPython,
            "--worker-script", try TestInstall.prefix() + "/share/dlhub/python/dlhub_worker.py", "--isolation", "none",
        ]
        let err = Pipe()
        pilot.standardError = err
        pilot.standardOutput = FileHandle.nullDevice
        try pilot.run()
        let connection = try listener.accept(timeout: 30)
        guard case .hello(let hello)? = connection.nextFrame(timeout: 30) else { throw TestSetupError("the pilot sent no hello") }
        for frame in reply(hello) {
            try? connection.send(frame)
            if case .welcome = frame { _ = connection.nextFrame(timeout: 2) }
        }
        try? connection.send(
            .load(ServableSpec(key: "bait", digest: "sha256:bait", directory: servable, metadata: metadata)))
        let deadline = Date().addingTimeInterval(30)
        while pilot.isRunning, Date() < deadline { usleep(100_000) }
        if pilot.isRunning { pilot.terminate() }
        pilot.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return (pilot.terminationStatus, stderr, FileManager.default.fileExists(atPath: marker))
    }

    @Test func aPilotRefusesWorkFromAPeerThatSkipsTheProof() throws {
        let result = try pilotAgainstFakeService { _ in [] }
        #expect(result.status != 0)
        #expect(
            result.stderr.contains("it sent a load frame before proving it is the service that submitted job 999999"), "\(result.stderr)")
        #expect(!result.marker, "the pilot started a worker for a peer that never proved itself")
    }

    @Test func aPilotRefusesAPeerWhoseProofIsWrong() throws {
        let result = try pilotAgainstFakeService { hello in
            [.welcome(PilotWelcome(session: 1, pool: hello.pool, nonce: PilotProof.random(), proof: PilotProof.random()))]
        }
        #expect(result.status != 0)
        #expect(result.stderr.contains("could not prove it is the service that submitted job 999999"), "\(result.stderr)")
        #expect(!result.marker)
    }
}
