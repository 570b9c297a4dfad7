"""The content digest of a servable version, recomputed from its files: a reference
implementation of the algorithm in docs/citation.md, for anyone holding a copy of the files.

    python3 -m dlhub_slurm.digest DIRECTORY      # prints sha256:...
"""

import hashlib
import json
import math
import os
import sys

PREFIX = b"dlhub-servable-v1\n"


def canonical(value):
    """The canonical JSON text of a value, as bytes: object keys sorted by their UTF-8 bytes, no
    whitespace, strings as UTF-8 with only the escapes the service writes, numbers as below."""
    out = []
    _write(value, out)
    return "".join(out).encode("utf-8")


def _write(value, out):
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        if not math.isfinite(value):
            out.append("null")
        elif value.is_integer() and abs(value) < 1e15:
            out.append("%d.0" % int(value))  # also turns -0.0 into 0.0
        else:
            out.append(repr(value))  # the shortest text that reads back as the same double
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    elif isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value, key=lambda k: k.encode("utf-8"))):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    else:
        raise TypeError("not a JSON value: %r" % (value,))


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _string(s):
    parts = ['"']
    for ch in s:
        if ch in _ESCAPES:
            parts.append(_ESCAPES[ch])
        elif ord(ch) < 0x20:
            parts.append("\\u%04x" % ord(ch))
        else:
            parts.append(ch)
    parts.append('"')
    return "".join(parts)


def manifest(directory):
    """``(path, size, sha256)`` of every regular file below ``directory``, except the top-level
    ``servable.json`` and ``withdrawn.json``; symlinks and directories are not entries."""
    entries = []

    def walk(relative):
        full = os.path.join(directory, relative) if relative else directory
        for name in sorted(os.listdir(full)):
            rel = relative + "/" + name if relative else name
            if not relative and name in ("servable.json", "withdrawn.json"):
                continue
            path = os.path.join(directory, rel)
            if os.path.islink(path):
                continue
            if os.path.isdir(path):
                walk(rel)
            elif os.path.isfile(path):
                h = hashlib.sha256()
                size = 0
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                        size += len(block)
                entries.append((rel, size, h.hexdigest()))

    walk("")
    return entries


def compute(metadata, files):
    """``sha256:<hex>`` of a servable's metadata (``servable.json`` as published; its
    ``dlhub.identifier`` is left out) and its manifest."""
    doc = json.loads(json.dumps(metadata))
    if isinstance(doc.get("dlhub"), dict):
        doc["dlhub"].pop("identifier", None)
    lines = "".join("%s  %d  %s\n" % (sha, size, path) for path, size, sha in sorted(files, key=lambda e: e[0]))
    h = hashlib.sha256()
    h.update(PREFIX)
    h.update(canonical(doc))
    h.update(b"\n")
    h.update(lines.encode("utf-8"))
    return "sha256:" + h.hexdigest()


def compute_directory(directory):
    """The digest of a published version's directory (its ``servable.json`` and files)."""
    with open(os.path.join(directory, "servable.json"), encoding="utf-8") as f:
        metadata = json.load(f)
    return compute(metadata, manifest(directory))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: python3 -m dlhub_slurm.digest SERVABLE_DIRECTORY\n")
        sys.exit(2)
    print(compute_directory(sys.argv[1]))
