import DLHubCore
import Foundation

/// Servable directories for serving tests, made at test time (models are trained, not committed).
public enum ServingFixtures {
    /// A Python-function servable whose functions misbehave on purpose.
    ///
    /// `behave(x)`: returns `x` upper-cased; `"crash"` kills the worker process, `"hang"` sleeps past
    /// any timeout, `"raise"` raises, `"mute"` closes its output and lingers. `slow(x)`: sleeps `delay` seconds then returns `2 * x`.
    public static func pythonFunctions(
        in parent: String, name: String, function: String, input: JSONValue, output: JSONValue,
        timeout: Double = 60, resources: JSONValue? = nil, dependencies: [String: String] = [:],
        maxBatchSize: Int = 64, deterministic: Bool = false
    ) throws -> String {
        let module = """
            import os
            import time

            def behave(x):
                if x == "crash":
                    os._exit(3)
                if x == "mute":
                    # Closes its answer pipe and lingers: it will never answer again.
                    os.close(1)
                    time.sleep(3600)
                if x == "hang":
                    time.sleep(3600)
                if x == "raise":
                    raise ValueError("asked to raise")
                return x.upper()

            def slow(x, delay=0.05):
                time.sleep(delay)
                return 2 * x

            def pid(x, delay=0.0):
                time.sleep(delay)
                return os.getpid()
            """
        return try pythonModule(
            in: parent, name: name, module: "testfns", code: module, function: function, input: input, output: output,
            dependencies: dependencies, timeout: timeout, resources: resources, maxBatchSize: maxBatchSize, deterministic: deterministic)
    }

    /// A Python-function servable from source: `code` becomes `<module>.py`, `function` is served.
    public static func pythonModule(
        in parent: String, name: String, module: String, code: String, function: String, input: JSONValue = ["type": "string"],
        output: JSONValue = ["type": "string"], dependencies: [String: String] = [:], environment: JSONValue? = nil,
        visibleTo: [String] = ["public"], timeout: Double = 60, resources: JSONValue? = nil, maxBatchSize: Int = 64,
        deterministic: Bool = false
    ) throws -> String {
        let dir = parent + "/" + name
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try code.write(toFile: dir + "/\(module).py", atomically: true, encoding: .utf8)
        var dlhub: [String: JSONValue] = [
            "name": .string(name), "visible_to": .array(visibleTo.map { .string($0) }), "files": ["other": [.string("\(module).py")]],
            "dependencies": ["python": .object(dependencies.mapValues { .string($0) })],
        ]
        if let environment { dlhub["environment"] = environment }
        if let resources { dlhub["resources"] = resources }
        let doc: JSONValue = [
            "datacite": ["titles": [["title": .string("Test servable \(name)")]], "creators": [["creatorName": "Test, Suite"]]],
            "dlhub": .object(dlhub),
            "servable": [
                "shim": "python.PythonStaticMethodServable",
                "methods": [
                    "run": [
                        "input": input, "output": output, "parameters": [:],
                        "method_details": ["module": .string(module), "method_name": .string(function)],
                    ]
                ],
                "timeout": .double(timeout), "batching": ["max_batch_size": .int(Int64(maxBatchSize))],
                "deterministic": .bool(deterministic),
            ],
        ]
        _ = FileManager.default.createFile(atPath: dir + "/servable.json", contents: Data(doc.encoded(pretty: true)))
        return dir
    }

    /// The iris classifier trained with `python` (an environment with some scikit-learn), served
    /// through `predict_proba`, declaring `dependencies` so that it gets an environment like it.
    public static func irisProbabilities(in parent: String, name: String, python: String, dependencies: [String: String]) throws -> String {
        let dir = parent + "/" + name
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let train = """
            import sys, joblib
            from sklearn.datasets import load_iris
            from sklearn.linear_model import LogisticRegression
            X, y = load_iris(return_X_y=True)
            joblib.dump(LogisticRegression(max_iter=500).fit(X, y), sys.argv[1])
            """
        let result = try Subprocess.run(python, ["-c", train, dir + "/model.joblib"])
        guard result.status == 0 else { throw TestSetupError("training with \(python) failed: \(result.stderr)") }
        let doc: JSONValue = [
            "datacite": ["titles": [["title": .string("Iris probabilities \(name)")]], "creators": [["creatorName": "Fisher, Ronald"]]],
            "dlhub": [
                "name": .string(name), "visible_to": ["public"], "files": ["model": "model.joblib"],
                "dependencies": ["python": .object(dependencies.mapValues { .string($0) })],
            ],
            "servable": [
                "shim": "sklearn.ScikitLearnServable",
                "methods": [
                    "run": [
                        "input": ["type": "ndarray", "shape": [nil, 4]], "output": ["type": "ndarray", "shape": [nil, 3]],
                        "parameters": [:],
                        "method_details": ["method_name": "predict_proba"],
                    ]
                ],
            ],
        ]
        _ = FileManager.default.createFile(atPath: dir + "/servable.json", contents: Data(doc.encoded(pretty: true)))
        return dir
    }

    /// A hostile servable: each input names an attack to try from inside its worker, and the
    /// output says whether it succeeded. The isolation tests publish it as an ordinary user.
    ///
    /// Input `{"attempt": KIND, "target": T}`; output `{"succeeded": Bool, "detail": String}`.
    /// Kinds: `read`, `list`, `write` (a path), `connect` (host:port), `munge` (make a credential),
    /// `signal` and `proc` (a host pid), `environment` (pilot secrets in the environment), `whoami`.
    public static func hostile(in parent: String, name: String = "hostile") throws -> String {
        let dir = parent + "/" + name
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let module = """
            import os, signal, socket, subprocess

            def attack(x):
                kind, target = x["attempt"], x.get("target")
                try:
                    if kind == "read":
                        with open(target, "rb") as f:
                            return {"succeeded": True, "detail": "read %r" % f.read(40)}
                    if kind == "list":
                        return {"succeeded": True, "detail": "listed %s" % sorted(os.listdir(target))[:10]}
                    if kind == "write":
                        with open(target, "a") as f:
                            f.write("owned by a hostile servable\\n")
                        return {"succeeded": True, "detail": "wrote %s" % target}
                    if kind == "connect":
                        host, port = target.rsplit(":", 1)
                        socket.create_connection((host, int(port)), timeout=3).close()
                        return {"succeeded": True, "detail": "connected to %s" % target}
                    if kind == "munge":
                        out = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
                        ok = out.returncode == 0 and out.stdout.startswith(b"MUNGE:")
                        return {"succeeded": ok, "detail": (out.stdout[:20] + out.stderr[-200:]).decode("utf-8", "replace")}
                    if kind == "signal":
                        os.kill(int(target), signal.SIGKILL)
                        return {"succeeded": True, "detail": "killed %s" % target}
                    if kind == "proc":
                        with open("/proc/%s/environ" % target, "rb") as f:
                            return {"succeeded": True, "detail": "read environ %r" % f.read(40)}
                    if kind == "environment":
                        leaked = sorted(k for k in os.environ if k.startswith(("SLURM", "DLHUB_PILOT", "MUNGE")))
                        return {"succeeded": bool(leaked), "detail": "variables: %s" % leaked}
                    if kind == "processes":
                        pids = [p for p in os.listdir("/proc") if p.isdigit()]
                        return {"succeeded": len(pids) > 2, "detail": "processes visible: %s" % pids[:20]}
                    if kind == "whoami":
                        return {"succeeded": False, "detail": "uid %d pid %d cwd %s" % (os.getuid(), os.getpid(), os.getcwd())}
                    return {"succeeded": False, "detail": "unknown attempt %s" % kind}
                except Exception as error:
                    return {"succeeded": False, "detail": "%s: %s" % (type(error).__name__, error)}
            """
        try module.write(toFile: dir + "/hostile.py", atomically: true, encoding: .utf8)
        let doc: JSONValue = [
            "datacite": ["titles": [["title": "A perfectly ordinary model"]], "creators": [["creatorName": "Mallory, Eve"]]],
            "dlhub": ["name": .string(name), "visible_to": ["public"], "files": ["other": ["hostile.py"]]],
            "servable": [
                "shim": "python.PythonStaticMethodServable",
                "methods": [
                    "run": [
                        "input": ["type": "dict"], "output": ["type": "dict"], "parameters": [:],
                        "method_details": ["module": "hostile", "method_name": "attack"],
                    ]
                ],
                "timeout": 30,
            ],
        ]
        _ = FileManager.default.createFile(atPath: dir + "/servable.json", contents: Data(doc.encoded(pretty: true)))
        return dir
    }

    /// The files of a servable directory as an upload archive, for publishing as another user.
    public static func archive(directory: String) throws -> [UInt8] {
        var entries: [TarEntry] = []
        let fm = FileManager.default
        for item in try fm.subpathsOfDirectory(atPath: directory).sorted() {
            var isDir: ObjCBool = false
            _ = fm.fileExists(atPath: directory + "/" + item, isDirectory: &isDir)
            if isDir.boolValue {
                entries.append(TarEntry(path: item, kind: .directory, mode: 0o755))
            } else {
                let path = directory + "/" + item
                let mode = (try fm.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? 0o644
                entries.append(TarEntry(path: item, kind: .file, mode: UInt32(mode), contents: Array(fm.contents(atPath: path) ?? Data())))
            }
        }
        return TarWriter.write(entries)
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
