import DLHubCore
import DLHubService
import DLHubTesting
import Foundation
import Logging
import Testing

/// The environments area on disk: what survives a restart, what is collected. (Builds with the
/// real installer are exercised end to end.)
@Suite struct EnvironmentStoreTests {
    func store(_ dir: TemporaryDirectory, gcDays: Int = 30) async throws -> EnvironmentStore {
        var settings = EnvironmentSettings()
        settings.root = dir.file("environments")
        settings.installer = .pip
        settings.gcAfterDays = gcDays
        let store = EnvironmentStore(
            settings: settings, registryRoot: dir.path, defaultPython: "/usr/bin/python3", logger: Logger(label: "test"))
        try await store.start()
        return store
    }

    func fakeEnvironment(_ dir: TemporaryDirectory, _ id: String, builtAt: String, complete: Bool = true) throws {
        let path = dir.file("environments/\(id)")
        try FileManager.default.createDirectory(atPath: path + "/bin", withIntermediateDirectories: true)
        if complete {
            let record: JSONValue = ["id": .string(id), "packages": [["numpy", "==2.0"]], "built_at": .string(builtAt)]
            try record.encodedString().write(toFile: path + "/dlhub-environment.json", atomically: true, encoding: .utf8)
        }
    }

    @Test func aRestartKeepsCompleteEnvironmentsAndRemovesHalfBuiltOnes() async throws {
        let dir = try TemporaryDirectory("dlhub-envs")
        try FileManager.default.createDirectory(atPath: dir.file("environments"), withIntermediateDirectories: true)
        try fakeEnvironment(dir, "py-complete", builtAt: "2026-11-01T00:00:00Z")
        try fakeEnvironment(dir, "py-half", builtAt: "", complete: false)
        try #"{"error": "building ... failed: no such package"}"#.write(
            toFile: dir.file("environments/py-failed.failed.json"), atomically: true, encoding: .utf8)
        let envs = try await store(dir)
        let listed = await envs.list()
        #expect(listed.map(\.id) == ["py-complete", "py-failed"])
        #expect(listed.first?.status == .ready(interpreter: dir.file("environments/py-complete/bin/python")))
        #expect(listed.first?.requirements.requirements.map(\.installArgument) == ["numpy==2.0"])
        #expect(listed.last?.status == .failed("building ... failed: no such package"))
        #expect(!FileManager.default.fileExists(atPath: dir.file("environments/py-half")))
    }

    @Test func unusedEnvironmentsAreCollectedAndUsedOnesKept() async throws {
        let dir = try TemporaryDirectory("dlhub-envs")
        try FileManager.default.createDirectory(atPath: dir.file("environments"), withIntermediateDirectories: true)
        try fakeEnvironment(dir, "py-old", builtAt: "2020-01-01T00:00:00Z")
        try fakeEnvironment(dir, "py-declared", builtAt: "2020-01-01T00:00:00Z")
        try fakeEnvironment(dir, "py-recent", builtAt: ISO8601DateFormatter().string(from: Date()))
        let envs = try await store(dir, gcDays: 30)
        let removed = await envs.collectGarbage(referenced: ["py-declared"])
        #expect(removed == ["py-old"])
        #expect(!FileManager.default.fileExists(atPath: dir.file("environments/py-old")))
        #expect(FileManager.default.fileExists(atPath: dir.file("environments/py-declared")))
        #expect(FileManager.default.fileExists(atPath: dir.file("environments/py-recent")))
    }

    @Test func theSameDependencySetHasOneAddressWhateverItsSpelling() async throws {
        let dir = try TemporaryDirectory("dlhub-envs")
        let envs = try await store(dir)
        let a = PythonRequirements([.init(name: "scikit-learn", specifier: "==1.5.2"), .init(name: "numpy", specifier: "")])
        let b = PythonRequirements([.init(name: "numpy", specifier: ""), .init(name: "scikit-learn", specifier: "==1.5.2")])
        let c = PythonRequirements([.init(name: "scikit-learn", specifier: "==1.5.1")])
        #expect(await envs.id(for: a) == envs.id(for: b))
        #expect(await envs.id(for: a) != envs.id(for: c))
    }
}
