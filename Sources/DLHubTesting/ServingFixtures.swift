import DLHubCore
import Foundation

/// Servable directories for serving tests, made at test time (models are trained, not committed).
public enum ServingFixtures {
    /// A Python-function servable whose functions misbehave on purpose.
    ///
    /// `behave(x)`: returns `x` upper-cased; `"crash"` kills the worker process, `"hang"` sleeps past
    /// any timeout, `"raise"` raises. `slow(x)`: sleeps `delay` seconds then returns `2 * x`.
    public static func pythonFunctions(
        in parent: String, name: String, function: String, input: JSONValue, output: JSONValue,
        timeout: Double = 60, resources: JSONValue? = nil, dependencies: [String: String] = [:],
        maxBatchSize: Int = 64, deterministic: Bool = false
    ) throws -> String {
        let dir = parent + "/" + name
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let module = """
            import os
            import time

            def behave(x):
                if x == "crash":
                    os._exit(3)
                if x == "hang":
                    time.sleep(3600)
                if x == "raise":
                    raise ValueError("asked to raise")
                return x.upper()

            def slow(x, delay=0.05):
                time.sleep(delay)
                return 2 * x

            def pid(x):
                return os.getpid()
            """
        try module.write(toFile: dir + "/testfns.py", atomically: true, encoding: .utf8)
        var dlhub: [String: JSONValue] = [
            "name": .string(name), "visible_to": ["public"], "files": ["other": ["testfns.py"]],
            "dependencies": ["python": .object(dependencies.mapValues { .string($0) })],
        ]
        if let resources { dlhub["resources"] = resources }
        let doc: JSONValue = [
            "datacite": ["titles": [["title": .string("Test servable \(name)")]], "creators": [["creatorName": "Test, Suite"]]],
            "dlhub": .object(dlhub),
            "servable": [
                "shim": "python.PythonStaticMethodServable",
                "methods": [
                    "run": [
                        "input": input, "output": output, "parameters": [:],
                        "method_details": ["module": "testfns", "method_name": .string(function)],
                    ]
                ],
                "timeout": .double(timeout), "batching": ["max_batch_size": .int(Int64(maxBatchSize)), "max_delay_ms": 5],
                "deterministic": .bool(deterministic),
            ],
        ]
        _ = FileManager.default.createFile(atPath: dir + "/servable.json", contents: Data(doc.encoded(pretty: true)))
        return dir
    }

    /// The scikit-learn example, copied and trained with `examples/sklearn-iris/train.py`.
    public static func trainedIris(in parent: String) throws -> String {
        let dir = parent + "/sklearn-iris"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.copyItem(atPath: BuiltProducts.packageRoot + "/examples/sklearn-iris", toPath: dir)
        try? FileManager.default.removeItem(atPath: dir + "/model.joblib")
        let result = try Subprocess.run(TestInstall.workerPython, [dir + "/train.py"])
        guard result.status == 0 else { throw TestSetupError("training the iris example failed: \(result.stderr)") }
        return dir
    }

    /// An ONNX servable: the iris classifier converted with skl2onnx, served by onnxruntime.
    public static func onnxIris(in parent: String) throws -> String {
        let dir = parent + "/onnx-iris"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let script = """
            import sys, numpy as np
            from sklearn.datasets import load_iris
            from sklearn.linear_model import LogisticRegression
            from skl2onnx import to_onnx
            X, y = load_iris(return_X_y=True)
            m = LogisticRegression(max_iter=500).fit(X, y)
            onx = to_onnx(m, X[:1].astype(np.float32), options={id(m): {"zipmap": False}})
            open(sys.argv[1] + "/model.onnx", "wb").write(onx.SerializeToString())
            """
        let result = try Subprocess.run(TestInstall.workerPython, ["-c", script, dir])
        guard result.status == 0 else {
            throw TestSetupError("making the ONNX model failed (slurm/install-deps installs skl2onnx): \(result.stderr)")
        }
        let doc: JSONValue = [
            "datacite": ["titles": [["title": "Iris classifier (ONNX)"]], "creators": [["creatorName": "Test, Suite"]]],
            "dlhub": [
                "name": "onnx-iris", "visible_to": ["public"], "files": ["model": "model.onnx"],
                "dependencies": ["python": ["onnxruntime": ""]],
            ],
            "servable": [
                "shim": "onnx.ONNXServable",
                "methods": [
                    "run": [
                        "input": ["type": "ndarray", "shape": [nil, 4]], "output": ["type": "ndarray", "shape": [nil]], "parameters": [:],
                        "method_details": [:],
                    ]
                ],
            ],
        ]
        _ = FileManager.default.createFile(atPath: dir + "/servable.json", contents: Data(doc.encoded(pretty: true)))
        return dir
    }

    /// The first output of an ONNX model run in-process with onnxruntime.
    public static func onnxInProcess(model: String, rows: JSONValue) throws -> JSONValue {
        let script = """
            import json, sys, numpy as np, onnxruntime
            s = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
            x = np.asarray(json.loads(sys.argv[2]), dtype=np.float32)
            print(json.dumps(s.run(None, {s.get_inputs()[0].name: x})[0].tolist()))
            """
        let result = try Subprocess.run(TestInstall.workerPython, ["-c", script, model, rows.encodedString()])
        guard result.status == 0 else { throw TestSetupError("in-process ONNX run failed: \(result.stderr)") }
        return try JSONValue.parse(result.stdout)
    }

    /// Predictions of the trained model called in-process, the reference a served answer must equal.
    public static func inProcessPredictions(model: String, rows: JSONValue) throws -> JSONValue {
        let script =
            "import joblib, json, sys; m = joblib.load(sys.argv[1]); print(json.dumps(m.predict(json.loads(sys.argv[2])).tolist()))"
        let result = try Subprocess.run(TestInstall.workerPython, ["-c", script, model, rows.encodedString()])
        guard result.status == 0 else { throw TestSetupError("in-process prediction failed: \(result.stderr)") }
        return try JSONValue.parse(result.stdout)
    }
}
