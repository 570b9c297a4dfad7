"""Trying a servable on this node before publishing it: ``dlhub test``, from Python."""

import json
import os
import shutil
import subprocess

from .errors import DLHubError, InvalidInputError, ServableError


def run_locally(servable_dir, inputs, parameters=None, timeout=300, python=None, isolation=None):
    """Runs ``inputs`` through the servable in ``servable_dir`` with ``dlhub test``: the same
    worker and sandbox a pilot uses, on this node. Returns the output; raises ``ServableError``
    (with the worker's traceback in ``log``) when it does not load or fails on the input."""
    dlhub = shutil.which("dlhub")
    if dlhub is None:
        raise DLHubError("DLHubClient.test needs the `dlhub` command on PATH: `module load dlhub`")
    command = [dlhub, "test", os.fspath(servable_dir), "--input", json.dumps(inputs), "--json"]
    for key, value in (parameters or {}).items():
        command += ["--param", "%s=%s" % (key, json.dumps(value))]
    if python:
        command += ["--python", python]
    if isolation:
        command += ["--isolation", isolation]
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ServableError("the local worker did not finish within %d s" % timeout) from None
    try:
        doc = json.loads(done.stdout)
    except ValueError:
        # Refused before any worker started (bad metadata, an input of the wrong type).
        message = done.stderr.decode("utf-8", "replace").strip().replace("dlhub: ", "", 1)
        raise InvalidInputError(message or "dlhub test failed (exit status %d)" % done.returncode) from None
    if "error" in doc:
        what = "did not load" if not doc.get("loaded") else "failed on this input"
        error = ServableError("the servable %s: %s\n%s" % (what, doc["error"], doc.get("log", "")))
        error.log = doc.get("log", "")
        raise error
    return doc.get("output")
