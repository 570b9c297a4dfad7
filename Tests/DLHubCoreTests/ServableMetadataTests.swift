import DLHubCore
import DLHubTesting
import Foundation
import Testing

@Suite struct ServableMetadataTests {
    @Test func acceptsMetadataInTheFormDLHubsSDKWrites() throws {
        let doc = ServableFixtures.sklearnDocument()
        let m = try ServableMetadata.validate(doc, files: ["model.joblib"])
        #expect(m.name == "iris")
        #expect(m.loader == .sklearn)
        #expect(m.files["model"] == "model.joblib")
        #expect(m.creators == ["Ronald Fisher"])
        #expect(m.input == .ndarray(shape: [nil, 4], item: .float))
        #expect(m.visibleTo == [.everyone])
        #expect(m.pythonDependencies["scikit-learn"] == "1.5.0")
    }

    /// Loader names are resolved once, at publish: the published document names the loader as
    /// the worker knows it, whatever spelling the author used.
    @Test func publishingWritesTheLoaderUnderTheNameTheWorkerKnows() throws {
        let worker = try String(contentsOfFile: BuiltProducts.packageRoot + "/python/dlhub_worker.py", encoding: .utf8)
        for loader in Loader.allCases where loader != .executable {
            #expect(worker.contains("\"\(loader.rawValue)\": self.load_"), "the Python worker has no loader named \(loader.rawValue)")
            for spelling in [loader.shortName, loader.sdkTypeName, loader.rawValue] {
                var doc = ServableFixtures.sklearnDocument()
                doc = doc.setting(["servable", "shim"], to: .null).setting(["servable", "type"], to: .string(spelling))
                    .setting(
                        ["servable", "methods", "run", "method_details"], to: ["module": "m", "method_name": "predict", "class_name": "C"])
                let m = try ServableMetadata.validate(doc, files: ["model.joblib"])
                #expect(m.loader == loader, "\(spelling)")
                let published = m.published(owner: "alice", version: 1, identifier: nil, date: "2026-12-04")
                #expect(published["servable"]?["shim"]?.stringValue == loader.rawValue, "\(spelling)")
            }
        }
    }

    @Test func rowModelsTakeLargerBatchesUnlessTheySayOtherwise() throws {
        let doc = ServableFixtures.sklearnDocument()
        #expect(try ServableMetadata.validate(doc, files: ["model.joblib"]).batching.maxBatchSize == 1024)
        let declared = doc.setting(["servable", "batching"], to: ["max_batch_size": 16])
        #expect(try ServableMetadata.validate(declared, files: ["model.joblib"]).batching.maxBatchSize == 16)
        let oneByOne = doc.setting(["servable", "batching"], to: ["vectorize": false])
        #expect(try ServableMetadata.validate(oneByOne, files: ["model.joblib"]).batching.maxBatchSize == 64)
    }

    /// DLHub's batching delay is accepted from its files and means nothing here (a batch never
    /// waits to fill); a value out of range is still a mistake worth naming.
    @Test func aBatchingDelayIsAcceptedButOutOfRangeIsNamed() throws {
        let doc = ServableFixtures.sklearnDocument()
        for ms in [0, 5, 60_000] {
            let m = try ServableMetadata.validate(
                doc.setting(["servable", "batching"], to: ["max_delay_ms": .int(Int64(ms))]), files: ["model.joblib"])
            #expect(try m.batching == ServableMetadata.validate(doc, files: ["model.joblib"]).batching)
        }
        for bad: JSONValue in [-1, 60_001, 2.5, "5", .null] {
            #expect(throws: DLHubError.self) {
                try ServableMetadata.validate(doc.setting(["servable", "batching"], to: ["max_delay_ms": bad]), files: ["model.joblib"])
            }
        }
    }

    @Test func namesEveryProblemByItsFieldPath() {
        var doc = ServableFixtures.sklearnDocument()
        doc = doc.setting(["datacite", "titles"], to: [])
        doc = doc.setting(["dlhub", "name"], to: "bad name")
        doc = doc.setting(["servable", "methods", "run", "input"], to: ["type": "ndarray", "shape": ["four"]])
        doc = doc.setting(["dlhub", "visible_to"], to: ["everyone"])
        do {
            _ = try ServableMetadata.validate(doc, files: ["model.joblib"])
            Issue.record("expected a validation error")
        } catch {
            let paths = Set(error.details.map(\.path))
            #expect(paths == ["datacite.titles", "dlhub.name", "servable.methods.run.input.shape[0]", "dlhub.visible_to[0]"])
            #expect(error.message.contains("contains spaces"))
        }
    }

    @Test func globusIdentitiesFromTheSDKSayWhatToUseInstead() {
        let doc = ServableFixtures.sklearnDocument().setting(
            ["dlhub", "visible_to"], to: ["urn:globus:auth:identity:3a8a3c44-0000-0000-0000-000000000000"])
        do { _ = try ServableMetadata.validate(doc, files: ["model.joblib"]); Issue.record("accepted") } catch {
            let message = error.details.first?.message ?? ""
            #expect(message.contains("is a Globus identity"))
            #expect(message.contains("use public, user:<login> or group:<unix group> instead"))
        }
    }

    @Test func missingBlocksAreReported() {
        #expect(throws: DLHubError.self) { try ServableMetadata.validate(["datacite": [:]]) }
        do { _ = try ServableMetadata.validate(["datacite": [:]]) } catch {
            #expect(Set(error.details.map(\.path)) == ["dlhub", "servable"])
        }
    }

    @Test func unknownLoaderIsRefused() {
        let doc = ServableFixtures.sklearnDocument().setting(["servable", "shim"], to: "cobol.CobolServable")
        do { _ = try ServableMetadata.validate(doc, files: ["model.joblib"]); Issue.record("accepted") } catch {
            #expect(error.details.map(\.path) == ["servable.shim"])
            #expect(error.message.contains("unknown loader type 'cobol.CobolServable'"))
        }
    }

    @Test func modelFileMustBeInTheUpload() {
        do { _ = try ServableMetadata.validate(ServableFixtures.sklearnDocument(), files: ["other.bin"]); Issue.record("accepted") } catch {
            #expect(error.details.map(\.path) == ["dlhub.files.model"])
        }
    }

    @Test(arguments: ["a/b", "..", "x..y", "has space", "", "-lead", String(repeating: "a", count: 101)])
    func badNamesAreRefused(_ name: String) {
        #expect(ServableName.problem(with: name) != nil)
    }

    @Test(arguments: ["iris", "iris-v2", "Model_3.1", "0day"])
    func goodNamesAreAccepted(_ name: String) {
        #expect(ServableName.problem(with: name) == nil)
    }

    @Test func referencesParse() throws {
        #expect(try ServableReference(parsing: "alice/iris") == .latest(owner: "alice", name: "iris"))
        #expect(try ServableReference(parsing: "alice/iris@3") == .version(owner: "alice", name: "iris", version: 3))
        let digest = "sha256:" + String(repeating: "ab", count: 32)
        #expect(try ServableReference(parsing: digest) == .digest(digest))
        for bad in ["iris", "alice/iris@0", "alice/iris@x", "a/b/c", "sha256:xyz", "../x/y"] {
            #expect(throws: DLHubError.self) { try ServableReference(parsing: bad) }
        }
    }

    @Test func inputsAreCheckedAgainstDeclaredTypes() {
        let t = DataType.ndarray(shape: [nil, 4], item: .float)
        #expect(t.check([[1, 2, 3, 4.5], [0, 0, 0, 0]]) == nil)
        #expect(t.check([[1, 2, 3]])?.contains("expected 4 element") == true)
        #expect(t.check([1, 2, 3, 4])?.contains("expected an array") == true)
        #expect(t.check([["a", 2, 3, 4]])?.contains("expected a number") == true)
        #expect(DataType.list(item: .string).check(["a", 1])?.contains("input[1]") == true)
        #expect(DataType.dict(properties: ["x": .integer]).check(["y": 1])?.contains("missing key 'x'") == true)
    }
}

/// Inputs that once trapped the service (found by the hostile-upload corpus and the fuzzers);
/// each must stay a validation issue.
@Suite struct MetadataRegressionTests {
    func doc(_ resources: JSONValue) -> JSONValue {
        ServableFixtures.sklearnDocument().setting(["dlhub", "files"], to: ["model": "model.joblib"]).setting(
            ["dlhub", "resources"], to: resources)
    }

    @Test(arguments: [
        ["memory": "1e300G"] as JSONValue, ["memory": .double(1e300)], ["memory": "9999999999999999999T"], ["cores": .double(1e30)],
        ["cores": .int(Int64.max)], ["gpus": .int(Int64.min)], ["memory": "-1G"], ["memory": "NaNG"], ["memory": "infG"],
    ])
    func hugeOrOddResourceNumbersAreIssuesNotTraps(_ resources: JSONValue) {
        #expect(throws: DLHubError.self) { try ServableMetadata.validate(doc(resources)) }
    }

    @Test func theLargestAcceptedSizesStillConvert() throws {
        let m = try ServableMetadata.validate(doc(["memory": "1P", "cores": 4096, "gpus": 64]))
        #expect(m.resources.memoryMB == 1_073_741_824 && m.resources.cores == 4096 && m.resources.gpus == 64)
    }
}
