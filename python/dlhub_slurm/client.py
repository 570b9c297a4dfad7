"""DLHubClient: publish, find and run servables on this cluster's DLHub, from Python.

Standard library only, so it runs with any login node's ``python3`` (3.8 or later).
"""

import concurrent.futures
import json
import logging
import os
import stat
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from . import errors
from .errors import DLHubError, DLHubTimeoutError, ServableError, ServiceUnavailableError

logger = logging.getLogger("dlhub_slurm")

# Longest single long-poll: the service honours ?wait up to an hour; shorter polls let progress show.
_POLL_SECONDS = 10.0


class DLHubClient:
    """A connection to the DLHub service of this cluster.

    The service is found as the ``dlhub`` command finds it: ``url``, else ``$DLHUB_URL``, else
    ``service.json`` in the registry (``registry`` or ``$DLHUB_REGISTRY``, which ``module load
    dlhub`` sets). Requests are authenticated with a token obtained with munge and kept in
    ``~/.dlhub/token.json`` (mode 0600, shared with ``dlhub login``); it is renewed when it
    expires.

    >>> from dlhub_slurm import DLHubClient
    >>> dl = DLHubClient()
    >>> dl.run("alice/iris", [[5.1, 3.5, 1.4, 0.2]])
    [0]
    """

    def __init__(self, url=None, registry=None, timeout=3600.0, progress=True):
        self.timeout = timeout
        self.progress = progress
        self._service_id = None
        self._registry_owner = None
        self._lock = threading.Lock()
        self._executor = None
        self.base_url = self._find_service(url, registry)
        self._token = _read_token(self.base_url)

    # -- finding and authenticating -----------------------------------------------------------

    def _find_service(self, url, registry):
        url = url or os.environ.get("DLHUB_URL")
        if url:
            return url.rstrip("/")
        roots = [r for r in (registry, os.environ.get("DLHUB_REGISTRY")) if r]
        for root in roots:
            path = os.path.join(root, "service.json")
            if os.path.exists(path):
                _check_trust(root, path)
                with open(path) as f:
                    doc = json.load(f)
                self._service_id = doc.get("service_id")
                self._registry_owner = os.stat(root).st_uid
                return doc["url"].rstrip("/")
        if not roots:
            raise ServiceUnavailableError(
                "cannot find the DLHub service: pass url=, set DLHUB_URL, or set DLHUB_REGISTRY to the "
                "registry directory (`module load dlhub` sets it)"
            )
        raise ServiceUnavailableError(
            "cannot find the DLHub service: no service.json in %s; is dlhubd running? Otherwise pass url= "
            "or set DLHUB_URL" % " or ".join(roots)
        )

    def _audience(self):
        if self._service_id is None:
            doc = self._request("GET", "/healthz", authenticate=False)
            self._service_id = doc.get("service_id") or ""
        return "dlhub-service:" + self._service_id if self._service_id else ""

    def login(self):
        """Trades a fresh munge credential for a token, saved for the next session too."""
        credential = _munge(self._audience())
        doc = self._request("POST", "/v1/auth/token", authorization="Munge " + credential)
        with self._lock:
            self._token = doc["token"]
        _write_token(self.base_url, doc["token"], doc.get("expires_at", 0), doc.get("login", ""))
        return doc.get("login")

    def _authorization(self):
        with self._lock:
            token = self._token
        if token is None:
            self.login()
            with self._lock:
                token = self._token
        return "Bearer " + token

    # -- HTTP ---------------------------------------------------------------------------------

    def _request(self, method, path, body=None, content_type="application/json", authenticate=True,
                 authorization=None, accept=(200, 201, 202), retried=False, data_file=None):
        """The JSON reply to one request; an error reply raises the matching DLHubError."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode() if content_type == "application/json" else body
            headers["Content-Type"] = content_type
        if data_file is not None:
            data = data_file
            headers["Content-Type"] = content_type
            headers["Content-Length"] = str(os.fstat(data_file.fileno()).st_size)
        if authorization or authenticate:
            _check_port_owner(self.base_url, self._registry_owner)
        if authorization:
            headers["Authorization"] = authorization
        elif authenticate:
            headers["Authorization"] = self._authorization()
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=3700) as response:
                status = response.status
                payload = response.read()
        except urllib.error.HTTPError as e:
            status = e.code
            payload = e.read()
        except (urllib.error.URLError, OSError) as e:
            raise ServiceUnavailableError(
                "cannot reach the DLHub service at %s: %s. Is dlhubd running?" % (self.base_url, getattr(e, "reason", e))
            ) from None
        try:
            doc = json.loads(payload) if payload else {}
        except ValueError:
            doc = {"error": {"code": None, "message": "HTTP %d: %s" % (status, payload[:300].decode("utf-8", "replace"))}}
        if status in accept:
            if isinstance(doc, dict):
                doc.setdefault("_status", status)
            return doc
        if status == 401 and authenticate and not authorization and not retried:
            # The token expired or the service was reset: a new one, once.
            _forget_token(self.base_url)
            with self._lock:
                self._token = None
            if data_file is not None:
                data_file.seek(0)
            return self._request(method, path, body, content_type, authenticate, authorization, accept, True, data_file)
        raise errors.from_document(status, doc)

    # -- running ------------------------------------------------------------------------------

    def run(self, name, inputs, parameters=None, asynchronous=False, timeout=None, cache=True):
        """Runs servable ``name`` (``owner/name``, ``owner/name@N`` or ``sha256:...``) on one input.

        As in DLHub's SDK, ``inputs`` is the servable's one input (for the iris example, a list of
        rows). Returns its output; with ``asynchronous=True`` a ``concurrent.futures.Future``
        (with ``task_id``) that resolves to it. A failure of the servable raises
        ``ServableError`` with the worker's message; no result within ``timeout`` seconds raises
        ``DLHubTimeoutError`` (the task keeps running; ``get_result(e.task_id)`` later).
        """
        body = {"input": inputs}
        return self._submit(name, body, parameters, asynchronous, timeout, cache)

    def run_many(self, name, list_of_inputs, parameters=None, asynchronous=False, timeout=None, cache=True):
        """Runs servable ``name`` once per element of ``list_of_inputs``, batched on the cluster.

        Returns the outputs in order. If some inputs failed, raises ``ServableError`` whose
        ``outputs`` holds the others' results and ``errors`` the failures by position.
        """
        body = {"inputs": list(list_of_inputs)}
        return self._submit(name, body, parameters, asynchronous, timeout, cache)

    def _submit(self, name, body, parameters, asynchronous, timeout, cache):
        if parameters:
            body["parameters"] = parameters
        if not cache:
            body["cache"] = False
        timeout = self.timeout if timeout is None else timeout
        path = "/v1/servables/%s/run" % _quote_reference(name)
        if asynchronous:
            # Stored by the service before it answers, so the id survives a restart of either side.
            task = self._request("POST", path + "?wait=0", body)
            future = DLHubFuture(task.get("id"))
            if task.get("_status") == 200:
                _settle(future, task)
            else:
                self._pool().submit(self._resolve, future, task, timeout)
            return future
        first = min(timeout, _POLL_SECONDS)
        task = self._request("POST", path + "?wait=%g" % first, body)
        return _outcome(self._follow(task, timeout))

    def _pool(self):
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="dlhub-task")
            return self._executor

    def _resolve(self, future, task, timeout):
        if not future.set_running_or_notify_cancel():
            return
        try:
            _settle(future, self._follow(task, timeout, quiet=True))
        except Exception as e:  # noqa: BLE001 - handed to the future's owner
            future.set_exception(e)

    def _follow(self, task, timeout, quiet=False):
        """Polls a task until it finishes; shows what it waits for while it does."""
        started = time.monotonic()
        reporter = _Progress(enabled=self.progress and not quiet)
        try:
            while task.get("_status") == 202:
                reporter.show(task, time.monotonic() - started)
                left = timeout - (time.monotonic() - started)
                if left <= 0:
                    raise DLHubTimeoutError(
                        "no result after %d s; the task keeps running: get_result(%r) later" % (timeout, task.get("id")),
                        task_id=task.get("id"),
                    )
                task = self._request("GET", "/v1/tasks/%s?wait=%g" % (urllib.parse.quote(task["id"], safe=""),
                                                                       max(0.1, min(left, _POLL_SECONDS))))
        finally:
            reporter.finish()
        return task

    def get_task_status(self, task_id):
        """A task as the service reports it (``status``, ``remaining``, and outputs once finished)."""
        task = self._request("GET", "/v1/tasks/%s" % urllib.parse.quote(task_id, safe=""))
        task.pop("_status", None)
        return task

    def get_result(self, task_id, timeout=None):
        """Waits for a task and returns its output (or outputs), raising as ``run`` does."""
        task = self._request("GET", "/v1/tasks/%s" % urllib.parse.quote(task_id, safe=""))
        return _outcome(self._follow(task, self.timeout if timeout is None else timeout))

    def cancel(self, task_id):
        """Cancels a task: its inputs that have not started never run. Returns the task."""
        task = self._request("POST", "/v1/tasks/%s/cancel" % urllib.parse.quote(task_id, safe=""), {})
        task.pop("_status", None)
        return task

    def tasks(self, limit=20):
        """Your tasks that were handed an id, newest first."""
        return self._request("GET", "/v1/tasks?limit=%d" % limit).get("tasks", [])

    # -- finding ------------------------------------------------------------------------------

    def search(self, query=None, owner=None, domain=None, author=None, doi=None, limit=None):
        """Servables you may see whose title, description, authors, domains or names match;
        ``author`` (part of a creator's name) and ``doi`` filter further."""
        params = {k: v for k, v in (("q", query), ("owner", owner), ("domain", domain), ("author", author), ("doi", doi),
                                    ("limit", limit)) if v}
        path = "/v1/servables" + ("?" + urllib.parse.urlencode(params) if params else "")
        return self._request("GET", path).get("servables", [])

    def search_by_authors(self, authors, match_all=False):
        """Servables by any (or, with ``match_all``, every) of ``authors`` (a name or a list)."""
        if isinstance(authors, str):
            authors = [authors]
        wanted = [a.lower() for a in authors]
        found = {}
        for author in authors:
            for s in self.search(author=author):
                found[(s.get("id"), s.get("version"))] = s
        out = []
        for s in found.values():
            have = " | ".join(s.get("authors") or []).lower()
            hits = [a for a in wanted if a in have]
            if hits and (not match_all or len(hits) == len(wanted)):
                out.append(s)
        return sorted(out, key=lambda s: (s.get("id", ""), s.get("version", 0)))

    def list_servables(self, owner=None):
        """Every servable you may see (or those of ``owner``)."""
        return self.search(owner=owner)

    def describe_servable(self, name):
        """A servable's metadata, versions, digest and environment."""
        doc = self._request("GET", "/v1/servables/%s" % _quote_reference(name))
        doc.pop("_status", None)
        return doc

    def cite(self, name, format="text"):
        """How to cite a version: ``text``, ``bibtex``, ``cff`` (strings) or ``datacite`` (a dict)."""
        doc = self._request("GET", "/v1/servables/%s/citation?format=json" % _quote_reference(name))
        if format not in ("text", "bibtex", "cff", "datacite"):
            raise errors.InvalidInputError("format is text, bibtex, datacite or cff, not %r" % (format,))
        return doc[format]

    def attach_doi(self, name, doi):
        """Records the DOI your site minted for a version (``owner/name@N``); its digest does not change."""
        doc = self._request("PUT", "/v1/servables/%s/doi" % _quote_reference(name), {"doi": doi})
        doc.pop("_status", None)
        return doc

    def verify(self, name):
        """Has the service recompute a version's digest from its files: a dict with ``digest``
        (as published), ``computed``, ``matches`` and the manifest (``files``)."""
        doc = self._request("GET", "/v1/servables/%s/verify" % _quote_reference(name))
        doc.pop("_status", None)
        return doc

    def whoami(self):
        """Who the service takes you for: login and groups."""
        doc = self._request("GET", "/v1/whoami")
        doc.pop("_status", None)
        return doc

    # -- publishing ---------------------------------------------------------------------------

    def publish_servable(self, model, owner=None):
        """Publishes a servable as the next version of its name; returns ``owner/name@N``.

        ``model`` is a servable directory (with ``servable.json``, as ``dlhub init`` writes it,
        or ``dlhub.json`` as DLHub's SDK writes it), or a model object from DLHub's SDK
        (``dlhub_sdk.models.servables...``), whose files are packaged as the SDK lists them.
        """
        from .packaging import pack

        with tempfile.TemporaryFile() as archive:
            pack(model, archive)
            archive.seek(0)
            query = "?" + urllib.parse.urlencode({"owner": owner}) if owner else ""
            doc = self._request("POST", "/v1/servables" + query, content_type="application/gzip", data_file=archive)
        return "%s@%s" % (doc["id"], doc["version"])

    def withdraw(self, name, reason=""):
        """Withdraws a version (``owner/name@N``): its identifier keeps resolving, to a tombstone."""
        query = "?" + urllib.parse.urlencode({"reason": reason}) if reason else ""
        doc = self._request("DELETE", "/v1/servables/%s%s" % (_quote_reference(name), query))
        doc.pop("_status", None)
        return doc

    def test(self, servable_dir, inputs, parameters=None, timeout=300):
        """Runs a servable directory on one input in a local worker on this node: nothing is
        published and no Slurm job is submitted. Returns the output; a servable that fails to
        load or run raises ``ServableError`` carrying the worker's full traceback."""
        from .local import run_locally

        return run_locally(servable_dir, inputs, parameters=parameters, timeout=timeout)

    def close(self):
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class DLHubFuture(concurrent.futures.Future):
    """A ``concurrent.futures.Future`` for a task; ``task_id`` names it for ``get_result``."""

    def __init__(self, task_id):
        super().__init__()
        self.task_id = task_id


def _settle(future, task):
    """Resolves a future with a finished task's outcome."""
    if not future.running() and not future.set_running_or_notify_cancel():
        return
    try:
        value = _outcome(task)
    except DLHubError as e:
        future.set_exception(e)
        return
    future.set_result(value)


def _outcome(task):
    """The output of a finished task, or the servable's error as an exception."""
    if "output" in task:
        return task["output"]
    if "error" in task and "outputs" not in task:
        raise ServableError("the servable failed on this input: %s" % task["error"], task_id=task.get("id"))
    outputs = task.get("outputs", [])
    failed = [(i, e) for i, e in enumerate(task.get("errors") or []) if e is not None]
    if failed:
        lines = ["  inputs[%d]: %s" % (i, e) for i, e in failed[:20]]
        if len(failed) > 20:
            lines.append("  ... and %d more" % (len(failed) - 20))
        raise ServableError(
            "%d of %d input(s) failed:\n%s" % (len(failed), len(outputs), "\n".join(lines)),
            outputs=outputs, errors=task.get("errors"), task_id=task.get("id"),
        )
    return outputs


def _quote_reference(name):
    if not isinstance(name, str) or not name:
        raise errors.InvalidInputError("name a servable as owner/name, owner/name@N or sha256:<digest>")
    return urllib.parse.quote(name, safe="/@:")


class _Progress:
    """What a waiting request waits for: to ``logging`` when it changes, and in Jupyter as one
    line that updates in place."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.last = None
        self.handle = None

    def show(self, task, waited):
        if not self.enabled:
            return
        state = describe_wait(task)
        if state != self.last:
            logger.info("task %s: %s", task.get("id"), state)
        self.last = state
        line = "waiting %d s: %s" % (waited, state)
        try:
            from IPython import get_ipython
            from IPython.display import display

            if get_ipython() is None or "IPKernelApp" not in get_ipython().config:
                return
            if self.handle is None:
                self.handle = display({"text/plain": line}, raw=True, display_id=True)
            else:
                self.handle.update({"text/plain": line}, raw=True)
        except Exception:  # noqa: BLE001 - no IPython, or not a kernel: logging is enough
            pass

    def finish(self):
        if self.handle is not None:
            try:
                self.handle.update({"text/plain": "done: %s" % (self.last or "")}, raw=True)
            except Exception:  # noqa: BLE001
                pass


def describe_wait(task):
    """What a task waits for, in words (the Slurm job, its state and reason, an environment build)."""
    w = task.get("waiting_for") or {}
    if "environment" in w:
        packages = " ".join(w["environment"].get("packages") or [])
        return "building the servable's Python environment (%s)" % packages
    if w.get("paused"):
        return "pool %s is paused: %s" % (w.get("pool", ""), w["paused"])
    if w.get("job_id"):
        if w.get("state") == "RUNNING":
            return "pilot job %s is running; task %s" % (w["job_id"], task.get("status", ""))
        return "pilot job %s is %s (%s) in pool %s" % (w["job_id"], w.get("state", "?"), w.get("reason", ""), w.get("pool", ""))
    if w.get("state") == "SUBMITTING":
        return "submitting a pilot job to pool %s" % w.get("pool", "")
    return "task %s" % task.get("status", "queued")


# -- the token file (shared with `dlhub login`) and munge -------------------------------------


def _token_file():
    directory = os.environ.get("DLHUB_CONFIG_DIR")
    if not directory:
        try:
            import pwd

            home = pwd.getpwuid(os.getuid()).pw_dir
        except (ImportError, KeyError):
            home = os.path.expanduser("~")
        directory = os.path.join(home, ".dlhub")
    return os.path.join(directory, "token.json")


def _read_token(url):
    try:
        with open(_token_file()) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    if doc.get("url") != url or int(doc.get("expires_at", 0)) <= time.time() + 30:
        return None
    return doc.get("token")


def _write_token(url, token, expires_at, login):
    path = _token_file()
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        temp = path + ".tmp.%d" % os.getpid()
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"url": url, "token": token, "expires_at": expires_at, "login": login}, f, indent=2)
        os.replace(temp, path)
    except OSError as e:
        logger.warning("cannot save the DLHub token in %s (%s); each session will ask munge again", path, e)


def _forget_token(url):
    try:
        with open(_token_file()) as f:
            if json.load(f).get("url") != url:
                return
        os.unlink(_token_file())
    except (OSError, ValueError):
        pass


def _munge(payload):
    """A fresh munge credential carrying ``payload`` (the service it is for), made by ``munge``."""
    try:
        done = subprocess.run(["munge", "-s", payload], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    except FileNotFoundError:
        raise errors.AuthenticationError(
            "cannot make a munge credential: the `munge` command is not on PATH (Debian package munge); "
            "DLHub authenticates you with munge"
        ) from None
    except subprocess.TimeoutExpired:
        raise errors.AuthenticationError("munge did not answer in 30 s; is munged running on this host?") from None
    if done.returncode != 0:
        raise errors.AuthenticationError(
            "cannot make a munge credential: %s. Is munged running on this host? (`munge -n` tests it)"
            % done.stderr.decode("utf-8", "replace").strip()
        )
    return done.stdout.decode().strip()


def _listening_uids(port):
    """The uids of the sockets listening on a local TCP port, from /proc/net/tcp and tcp6."""
    uids = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 7 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                uids.add(int(fields[7]))
    return uids


def _check_port_owner(base_url, owner):
    """Refuses to send a credential to a port on this host that the registry's owner does not hold:
    while dlhubd is down, any local user can listen on its port and collect what clients send."""
    if owner is None:
        return
    parsed = urllib.parse.urlsplit(base_url)
    host = (parsed.hostname or "").lower()
    if not (host == "localhost" or host == "::1" or host.startswith("127.")):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    listeners = _listening_uids(port)
    if listeners and owner not in listeners:
        raise ServiceUnavailableError(
            "not sending credentials to %s: the program listening there runs as uid %s, not as uid %d, who owns the "
            "registry (dlhubd may be down and someone else took its port). Tell the site admin"
            % (base_url, ", ".join(str(u) for u in sorted(listeners)), owner)
        )


def _check_trust(root, path):
    """Refuses a service.json that someone other than the registry's owner wrote or could write:
    it would send every request, and its credentials, elsewhere."""
    info = os.lstat(path)
    owner = os.stat(root).st_uid
    if not stat.S_ISREG(info.st_mode):
        raise ServiceUnavailableError("not trusting %s: it is not a regular file; ask the site admin to check the registry" % path)
    if info.st_uid != owner:
        raise ServiceUnavailableError(
            "not trusting %s: it belongs to uid %d, not to the registry's owner (uid %d); someone may be "
            "redirecting DLHub requests. Tell the site admin" % (path, info.st_uid, owner)
        )
    if info.st_mode & 0o022:
        raise ServiceUnavailableError(
            "not trusting %s: other users can write it; someone could redirect DLHub requests. Tell the "
            "site admin (chmod go-w %s)" % (path, path)
        )


__all__ = ["DLHubClient", "DLHubFuture", "DLHubError", "describe_wait"]
