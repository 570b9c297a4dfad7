#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpus (Fuzz/corpus/<target>/): small valid inputs of each
kind, which libFuzzer mutates. Run once when the formats change; the output is committed.

    python3 Fuzz/seeds.py
"""
import io, json, os, struct, tarfile, zipfile

here = os.path.dirname(os.path.abspath(__file__))
doc = {
    "datacite": {"titles": [{"title": "Iris"}], "creators": [{"creatorName": "Fisher, Ronald"}]},
    "dlhub": {"name": "iris", "visible_to": ["public"], "files": {"model": "model.joblib"},
              "dependencies": {"python": {"scikit-learn": "1.5.2"}}, "resources": {"cores": 2, "memory": "4G"},
              "environment": {"type": "python"}},
    "servable": {"shim": "sklearn.ScikitLearnServable", "timeout": 30,
                 "methods": {"run": {"input": {"type": "ndarray", "shape": [None, 4]}, "output": {"type": "ndarray", "shape": [None]},
                                     "parameters": {}, "method_details": {"method_name": "predict"}}},
                 "batching": {"max_batch_size": 64, "max_delay_ms": 5}, "deterministic": True},
}
python_doc = json.loads(json.dumps(doc))
python_doc["dlhub"]["environment"] = {"type": "modules", "modules": ["gcc/12"]}
python_doc["servable"] = {"shim": "python.PythonStaticMethodServable",
                          "methods": {"run": {"input": {"type": "list", "item_type": {"type": "float"}}, "output": {"type": "dict"},
                                              "method_details": {"module": "m", "method_name": "f"}}}}


def write(target, name, data):
    os.makedirs(os.path.join(here, "corpus", target), exist_ok=True)
    with open(os.path.join(here, "corpus", target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


for name, d in [("sklearn.json", doc), ("python.json", python_doc)]:
    write("FuzzMetadata", name, json.dumps(d))
    write("FuzzJSON", name, json.dumps(d, indent=2))
write("FuzzJSON", "scalars.json", '[1, -2.5e-3, "\\u00e9\\ud83d\\ude00", true, null, {"a": {}}]')


def frame(kind, body):
    return struct.pack(">IB", len(body) + 1, kind) + body


hello = {"credential": "MUNGE:AwQ", "job_id": 42, "node": "node1", "cores": 4, "memory_mb": 4000, "gpus": 0,
         "walltime_end": 1800000000, "pool": "cpu", "slots": 4, "nonce": "0" * 64, "isolation": "bubblewrap"}
write("FuzzPilotFrames", "hello", frame(1, json.dumps(hello).encode()))
write("FuzzPilotFrames", "welcome-authenticate",
      frame(2, json.dumps({"session": 1, "pool": "cpu", "nonce": "1" * 64, "proof": "ab", "frame_limit": 65536}).encode())
      + frame(12, b'{"proof": "cd"}'))
write("FuzzPilotFrames", "load-loaded", frame(3, json.dumps({"key": "k", "digest": "sha256:x", "directory": "/r", "metadata": doc,
                                                             "environment": {"interpreter": "/e/bin/python", "modules": [], "network": False}}).encode())
      + frame(4, b'{"key": "k", "error": null, "log": "ok"}'))
header = json.dumps({"key": "k", "timeout": 2.5}).encode()
batch = struct.pack(">QI", 7, len(header)) + header + struct.pack(">I", 2) + b"{}" + struct.pack(">I", 2)
batch += struct.pack(">QI", 1, 5) + b"[1,2]" + struct.pack(">QI", 2, 3) + b'"x"'
write("FuzzPilotFrames", "batch", frame(6, batch))
results = struct.pack(">QI", 7, 2) + struct.pack(">QBI", 1, 0, 1) + b"3" + struct.pack(">QBI", 2, 1, 4) + b"boom" + struct.pack(">I", 3) + b"log"
write("FuzzPilotFrames", "results-heartbeat-credit-bye",
      frame(7, results) + frame(8, b'{"workers": 1}') + frame(9, b'{"slots": 0}') + frame(11, b'{"reason": "done", "returned": [3]}'))

meta = json.dumps(doc).encode()


def tar_bytes(mode, extra=()):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode, format=tarfile.PAX_FORMAT) as t:
        for path, data in [("servable.json", meta), ("model.joblib", b"weights")] + list(extra):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("link")
        link.type = tarfile.SYMTYPE
        link.linkname = "model.joblib"
        t.addfile(link)
        d = tarfile.TarInfo("sub")
        d.type = tarfile.DIRTYPE
        t.addfile(d)
    return out.getvalue()


write("FuzzArchive", "servable.tar", tar_bytes("w", [("sub/" + "n" * 120, b"long name")]))
write("FuzzArchive", "servable.tar.gz", tar_bytes("w:gz"))
z = io.BytesIO()
with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as f:
    f.writestr("servable.json", meta)
    f.writestr("model.joblib", b"weights")
    info = zipfile.ZipInfo("link")
    info.create_system = 3
    info.external_attr = 0o120777 << 16
    f.writestr(info, "model.joblib")
write("FuzzArchive", "servable.zip", z.getvalue())
print("seeds written to", os.path.join(here, "corpus"))
