import DLHubCore
import DLHubTesting
import Testing

@Suite struct ServableEnvironmentTests {
    func validate(dependencies: JSONValue? = nil, environment: JSONValue? = nil) throws -> ServableMetadata {
        var doc = ServableFixtures.sklearnDocument().setting(["dlhub", "files"], to: ["model": "model.joblib"])
        doc = doc.setting(["servable", "dependencies", "python"], to: dependencies ?? [:])
        if let environment { doc = doc.setting(["dlhub", "environment"], to: environment) }
        return try ServableMetadata.validate(doc)
    }

    @Test func declaredDependenciesGetAPythonEnvironmentWithExactVersions() throws {
        let m = try validate(dependencies: ["Scikit_Learn": "1.5.2", "numpy": "", "scipy": ">=1.10,<2", "joblib": "latest"])
        #expect(m.environment.kind == .python)
        #expect(
            m.environment.requirements.requirements.map(\.installArgument) == ["joblib", "numpy", "scikit-learn==1.5.2", "scipy>=1.10,<2"])
        // Written in another order and spelling, the same set.
        let again = try validate(dependencies: ["scipy": ">=1.10,<2", "joblib": "*", "scikit-learn": "1.5.2", "NumPy": ""])
        #expect(again.environment.requirements == m.environment.requirements)
        #expect(try validate().environment.kind == .poolDefault)
    }

    @Test func installerOptionsAndURLsAreNotPackages() {
        for hostile: JSONValue in [
            ["--index-url": "1.0"], ["-e": "."], ["numpy": "1.0 --extra-index-url http://evil"], ["git+https://x/y": ""],
            ["numpy": "@ file:///etc/passwd"], ["../x": ""], ["numpy": "1.0; rm -rf /"],
        ] {
            #expect(throws: DLHubError.self, "\(hostile)") { try validate(dependencies: hostile) }
        }
    }

    @Test func modulesAndContainersAreDeclaredAndChecked() throws {
        let modules = try validate(environment: ["type": "modules", "modules": ["gcc/12.2", "cuda/12"]])
        #expect(modules.environment.kind == .modules && modules.environment.modules == ["gcc/12.2", "cuda/12"])
        let container = try validate(environment: ["type": "container", "image": "/project/images/tf.sif"])
        #expect(container.environment.image == "/project/images/tf.sif")
        #expect(throws: DLHubError.self) { try validate(environment: ["type": "modules", "modules": ["-x"]]) }
        #expect(throws: DLHubError.self) { try validate(environment: ["type": "modules", "modules": ["../../etc"]]) }
        #expect(throws: DLHubError.self) { try validate(environment: ["type": "container", "image": "relative.sif"]) }
        #expect(throws: DLHubError.self) { try validate(environment: ["type": "container", "image": "/a/../../etc/shadow"]) }
        #expect(throws: DLHubError.self) { try validate(environment: ["type": "python"]) }
        #expect(throws: DLHubError.self) { try validate(environment: ["type": "conda"]) }
        #expect(try validate(dependencies: ["numpy": "2.0"], environment: "default").environment.kind == .poolDefault)
    }
}
