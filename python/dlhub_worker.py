#!/usr/bin/env python3
"""DLHub worker shim: loads one servable once, then answers batches on stdin/stdout.

The pilot starts one of these per resident servable:

    python3 dlhub_worker.py SERVABLE_DIRECTORY

Protocol (docs/worker-protocol.md): newline-delimited JSON. The worker first writes
{"ready": true} (or {"ready": false, "error": "..."} and exits). Then, for each line
{"batch": ID, "parameters": {...}, "inputs": [x1, x2, ...]} it writes one line
{"batch": ID, "results": [{"output": y1}, {"error": "..."}, ...]} with one result per input.
Anything the model prints goes to stderr, so stdout carries protocol lines only.

Vectorized batches: a scikit-learn, ONNX or TorchScript model whose inputs are lists of rows
(a free leading dimension) is called once per batch with the rows of every input concatenated,
and its output is split back by row counts; a Python function opts in by naming a batch method
(method_details.batch_method_name: takes a list of inputs, returns a list of outputs). If the
one call fails, or its output does not have one row per input row, each input runs alone, so a
bad input still fails by itself. `servable.batching.vectorize: false` turns this off.
"""
import gc
import importlib
import importlib.metadata
import json
import math
import os
import pickle
import sys
import traceback

PROTOCOL_OUT = sys.stdout
sys.stdout = sys.stderr  # user code's print() must not corrupt the protocol


def send(message):
    PROTOCOL_OUT.write(json.dumps(message, allow_nan=False, separators=(",", ":")) + "\n")
    PROTOCOL_OUT.flush()


def to_json(value):
    """Plain JSON types from numpy arrays, numpy scalars, tensors, tuples and sets."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensor
        value = value.detach().cpu().numpy()
    if hasattr(value, "tolist"):
        return to_json(value.tolist())
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("the output contains NaN or infinity, which JSON cannot carry")
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def check_dependencies(metadata):
    declared = {}
    for block in (metadata.get("dlhub", {}), metadata.get("servable", {})):
        declared.update((block.get("dependencies") or {}).get("python") or {})
    missing = []
    for name in sorted(declared):
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        raise RuntimeError(
            "missing Python packages: %s; install them into the environment the pilot uses (%s), "
            "e.g. %s -m pip install %s" % (", ".join(missing), sys.executable, sys.executable, " ".join(missing)))


def gpus_assigned():
    """Whether the pilot pinned this worker to GPUs of its own (CUDA_VISIBLE_DEVICES)."""
    return bool(os.environ.get("CUDA_VISIBLE_DEVICES", "").strip())


def model_path(directory, metadata, key="model"):
    files = metadata.get("dlhub", {}).get("files") or {}
    name = files.get(key) or files.get("pickle") or files.get("model")
    if not name:
        raise RuntimeError("servable.json names no model file (dlhub.files.%s)" % key)
    return os.path.join(directory, name)


class NotVectorizable(Exception):
    """The batch cannot go through one call; its inputs run one at a time."""


def row_batch(call, to_array):
    """call(rows) for a model with a free leading dimension, as a batch function: the rows of
    every input go through one call, and the output rows are handed back by count."""
    def batch(inputs, **kw):
        if not all(isinstance(x, list) and x for x in inputs):
            raise NotVectorizable("an input is not a non-empty list of rows")
        counts = [len(x) for x in inputs]
        array = to_array([row for x in inputs for row in x])
        if array.dtype == object or array.ndim < 1 or array.shape[0] != sum(counts):
            raise NotVectorizable("the inputs' rows do not make one array")
        output = call(array, **kw)
        if hasattr(output, "detach") and hasattr(output, "cpu"):  # torch tensor
            output = output.detach().cpu().numpy()
        if getattr(output, "ndim", 0) < 1 or len(output) != array.shape[0]:
            raise NotVectorizable("the output does not have one row per input row")
        rows = output.tolist()
        parts, start = [], 0
        for n in counts:
            parts.append(rows[start:start + n])
            start += n
        return parts
    return batch


class Servable:
    """A loaded model: call(x, **parameters) returns the output for one input; call_batch, where
    the model allows it, returns the outputs of a list of inputs from one call."""

    def __init__(self, directory, metadata):
        self.metadata = metadata
        servable = metadata.get("servable", {})
        run = servable.get("methods", {}).get("run", {})
        self.details = run.get("method_details") or {}
        self.defaults = run.get("parameters") or {}
        shim = servable.get("shim") or servable.get("type") or ""
        sys.path.insert(0, directory)
        check_dependencies(metadata)
        loader = {
            "python.PythonStaticMethodServable": self.load_function,
            "python.PythonClassMethodServable": self.load_class_method,
            "sklearn.ScikitLearnServable": self.load_sklearn,
            "torch.TorchServable": self.load_torch,
            "onnx.ONNXServable": self.load_onnx,
            "keras.KerasServable": self.load_keras,
            "tensorflow.TensorFlowServable": self.load_keras,
        }.get(shim)
        if loader is None:
            raise RuntimeError("this worker has no loader for %r" % shim)
        self.call_batch = None
        self.call = loader(directory, metadata)
        if (servable.get("batching") or {}).get("vectorize") is False:
            self.call_batch = None

    def run_batch(self, inputs, parameters):
        """The batch's results as a JSON array, one {"output": ...} or {"error": ...} per input."""
        if self.call_batch is not None and len(inputs) > 1:
            try:
                outputs = self.call_batch(inputs, **parameters)
                if len(outputs) != len(inputs):
                    raise NotVectorizable("the batch method returned %d outputs for %d inputs" % (len(outputs), len(inputs)))
                try:  # plain values: the whole batch through the C encoder at once
                    return ENCODER.encode([{"output": output} for output in outputs])
                except (TypeError, ValueError):
                    return "[" + ",".join(encode_output(output) for output in outputs) + "]"
            except Exception:
                pass  # one call could not take them all: each input runs alone and fails alone
        results = []
        for x in inputs:
            try:
                results.append(encode_output(self.call(x, **parameters)))
            except Exception as error:
                traceback.print_exc()  # to stderr: the owner's log (dlhub logs), and `dlhub test`
                results.append(encode_error(error))
        return "[" + ",".join(results) + "]"

    def load_function(self, directory, metadata):
        module = importlib.import_module(self.details["module"])
        function = getattr(module, self.details["method_name"])
        if self.details.get("batch_method_name"):
            self.call_batch = getattr(module, self.details["batch_method_name"])
        if self.details.get("autobatch"):
            return lambda x, **kw: [function(item, **kw) for item in x]
        return function

    def load_class_method(self, directory, metadata):
        with open(model_path(directory, metadata, "pickle"), "rb") as f:
            obj = pickle.load(f)
        return getattr(obj, self.details.get("method_name", "__call__"))

    def load_sklearn(self, directory, metadata):
        import numpy as np
        path = model_path(directory, metadata)
        method = self.details.get("method_name", "predict").lstrip("_")
        options = metadata.get("servable", {}).get("options") or {}
        if options.get("serialization_method", "joblib") == "pickle":
            with open(path, "rb") as f:
                model = pickle.load(f)
        else:
            import joblib
            model = joblib.load(path)
        bound = getattr(model, method)
        self.call_batch = row_batch(bound, np.asarray)
        return lambda x, **kw: bound(np.asarray(x), **kw)

    def load_torch(self, directory, metadata):
        import torch
        device = "cuda" if gpus_assigned() and torch.cuda.is_available() else "cpu"
        model = torch.jit.load(model_path(directory, metadata), map_location=device)
        model.eval()

        def call(x, **kw):
            with torch.no_grad():
                return model(torch.as_tensor(x, dtype=torch.float32, device=device), **kw)
        import numpy as np
        self.call_batch = row_batch(call, lambda x: np.asarray(x, dtype=np.float32))
        return call

    def load_onnx(self, directory, metadata):
        import numpy as np
        import onnxruntime
        providers = ["CPUExecutionProvider"]
        if gpus_assigned() and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        session = onnxruntime.InferenceSession(model_path(directory, metadata), providers=providers)
        name = session.get_inputs()[0].name
        call = lambda x, **kw: session.run(None, {name: np.asarray(x, dtype=np.float32)})[0]  # noqa: E731
        if session.get_inputs()[0].shape and not isinstance(session.get_inputs()[0].shape[0], int):
            self.call_batch = row_batch(call, lambda x: np.asarray(x, dtype=np.float32))
        return call

    def load_keras(self, directory, metadata):
        import numpy as np
        from tensorflow import keras
        model = keras.models.load_model(model_path(directory, metadata))
        self.call_batch = row_batch(lambda x, **kw: model.predict(x, verbose=0, **kw), np.asarray)
        return lambda x, **kw: model.predict(np.asarray(x), verbose=0, **kw)


ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def encode_output(output):
    """{"output": ...} as JSON text, encoded once (plain Python values go straight to the C
    encoder; arrays, tensors and other types through to_json)."""
    if hasattr(output, "tolist") and not hasattr(output, "detach"):
        output = output.tolist()
    try:
        text = ENCODER.encode(output)
    except ValueError:
        raise ValueError("the output contains NaN or infinity, which JSON cannot carry")
    except TypeError:
        text = ENCODER.encode(to_json(output))
    return '{"output":' + text + "}"


def encode_error(error):
    return json.dumps({"error": "%s: %s" % (type(error).__name__, error)})


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: dlhub_worker.py SERVABLE_DIRECTORY\n")
        return 2
    directory = sys.argv[1]
    try:
        with open(os.path.join(directory, "servable.json")) as f:
            metadata = json.load(f)
        servable = Servable(directory, metadata)
    except Exception as error:  # the pilot reports this to whoever asked
        traceback.print_exc()
        send({"ready": False, "error": "%s: %s" % (type(error).__name__, error)})
        return 1
    # The model, its libraries and everything loaded so far live as long as the worker: moved
    # out of the collector's sight, so a full collection does not walk them all in the middle
    # of a batch (measured: 30-45 ms pauses at the 99th percentile of 500-row scikit-learn
    # batches without this, about 2 ms with it).
    gc.collect()
    gc.freeze()
    send({"ready": True, "pid": os.getpid()})
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        parameters = dict(servable.defaults)
        parameters.update(request.get("parameters") or {})
        results = servable.run_batch(request.get("inputs", []), parameters)
        PROTOCOL_OUT.write('{"batch":%s,"results":%s}\n' % (json.dumps(request.get("batch")), results))
        PROTOCOL_OUT.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
