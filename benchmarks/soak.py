#!/usr/bin/env python3
"""Seeded chaos soak of dlhubd, its pilots and workers on a real local Slurm cluster.

Several users (alice, carol in group physics, bob) send mixed traffic while an injector breaks
things on a schedule drawn from the seed. At the end the soak checks what the service promises
(README "How a request is served", docs/requests.md, DESIGN.md "Non-negotiables") and prints a
table and PASS or FAIL. A failure prints its seed; the same seed replays the same fault schedule
and the same choices by every user (not the same timing: the machine decides that).

Traffic kinds (functions traffic_*):   sync, async, bulk, cached, bad_input, crash, hang,
                                       fail_load, params, cancel, access, publish
Fault kinds (functions fault_*):       kill_worker, cancel_pilot, kill_dlhubd, term_dlhubd,
                                       stop_slurmctld, flood_http, flood_pilot
Invariants (the INVARIANTS list):      every accepted request answered exactly once; outputs
                                       correct; bad input refused with a 4xx; dlhubd died only
                                       when killed, stops bounded; memory, descriptors, threads
                                       bounded; no pilot job leaked; registry and task store
                                       agree; workers hold no descriptor of the pilot's

Faults run in two lanes side by side (processes: workers, pilots, dlhubd; surroundings:
slurmctld, floods), so that a short run sees every kind. Whatever ends the soak (its end, an
error, Ctrl-C or SIGTERM), a slurmctld it stopped is started again (Soak.abort).

Run it through benchmarks/soak, which brings up the cluster and installs the binaries; this file
starts and restarts dlhubd itself (as the service account), since killing it is part of the job.
Standard library only.
"""
import argparse
import collections
import datetime
import errno
import http.client
import io
import json
import os
import random
import re
import resource
import select
import signal
import socket
import string
import subprocess
import sys
import tarfile
import threading
import time
import traceback

FINISHED = {"completed", "failed", "completed_with_errors", "cancelled"}
USERS = ["alice", "bob", "carol"]
POOL = "soak"
JOB_NAME = "dlhub-pilot-" + POOL
MAX_PILOTS = 2
MAX_QUEUED_AHEAD = 1

# Bounds on dlhubd, generous but finite: a leak shows up as a crossing, not as a number to judge.
RSS_LIMIT_MB = 1536
THREADS_LIMIT = 1000
FD_SLACK_AFTER_FLOOD = 64          # descriptors allowed above the pre-flood count once a flood ends
FD_SETTLE_SECONDS = 20             # how long a flood's descriptors may take to be released
STRAGGLER_SECONDS = 120            # accepted tasks must be finished this long after traffic stops
STRAGGLER_SECONDS_SHORT = 60       # ... in a run of at most SHORT_RUN_SECONDS (the CI run), on a service left idle
SHORT_RUN_SECONDS = 300
GRACEFUL_STOP_SECONDS = 15         # a SIGTERM'd dlhubd must be gone within this: "bounded (at most 8 s
                                   # waiting for Slurm)" (docs/configuration.md), plus slack; below the
                                   # longest ?wait= the users send (30 s), so a stop held by one shows
GRACEFUL_STOP_PATIENCE = 40        # ... and is killed after this (meanwhile: how long it really takes)
HANG_TIMEOUT = 3                   # the hanging servable's timeout (servable.json "timeout")
TOKEN_TTL = 30                     # short, so that the users' tokens expire and are renewed on a 401
HTTP_IDLE_TIMEOUT = 10             # http_idle_timeout_seconds: a flood outlasts it and must be cut off
PILOT_HANDSHAKE_SECONDS = 5        # what the pilot port gives a stranger (README, "Trust")


# Faults after which an item that was running is run again, counting one of its 3 attempts.
PILOT_LOSING_FAULTS = {"cancel_pilot", "kill_dlhubd", "term_dlhubd", "crash"}

# The invariants, as the report names them; every violation is charged to one.
ANSWERED = "every accepted request answered exactly once"
OUTPUTS = "outputs correct, errors say what happened"
REFUSED = "bad input refused with a 4xx"
ALIVE = "dlhubd died only when killed; stops bounded"
BOUNDED = "memory, descriptors, threads bounded"
NOLEAK = "no pilot job leaked"
AGREE = "registry and task store agree"
SEALED = "workers hold no descriptor of the pilot's"
HARNESS = "the soak's own code ran"
INVARIANTS = [ANSWERED, OUTPUTS, REFUSED, ALIVE, BOUNDED, NOLEAK, AGREE, SEALED, HARNESS]


def now():
    return time.monotonic()


# ================================================================ the servables

# Each servable: who publishes it, its visibility, its declared input, its Python code, and the
# answer expected for an input (`expect(x, parameters)` returns ("output", value) or ("error", None)).
SERVABLES = {
    "double": dict(
        owner="alice", visible_to=["public"], input={"type": "integer"}, output={"type": "integer"},
        code="def run(x):\n    return 2 * x\n",
        expect=lambda x, p: ("output", 2 * x)),
    "square": dict(
        owner="carol", visible_to=["public"], input={"type": "integer"}, output={"type": "integer"}, deterministic=True,
        code="def run(x):\n    return x * x\n",
        expect=lambda x, p: ("output", x * x)),
    "fragile": dict(
        owner="bob", visible_to=["public"], input={"type": "string"}, output={"type": "string"}, timeout=20,
        code="import os\n\ndef run(x):\n    if x == 'crash':\n        os._exit(3)\n    return x.upper()\n",
        expect=lambda x, p: ("error", None) if x == "crash" else ("output", x.upper())),
    "sleepy": dict(
        owner="bob", visible_to=["public"], input={"type": "string"}, output={"type": "string"}, timeout=HANG_TIMEOUT,
        code="import time\n\ndef run(x):\n    if x == 'hang':\n        time.sleep(3600)\n    return x.upper()\n",
        expect=lambda x, p: ("error", None) if x == "hang" else ("output", x.upper())),
    "broken": dict(
        owner="carol", visible_to=["public"], input={"type": "integer"}, output={"type": "integer"},
        code="raise RuntimeError('this servable is broken on purpose: it fails at import')\n\ndef run(x):\n    return x\n",
        expect=lambda x, p: ("error", None)),
    "scale": dict(
        owner="alice", visible_to=["public"], input={"type": "integer"}, output={"type": "integer"},
        code="def run(x, k=1, **ignored):\n    return x * k\n",
        expect=lambda x, p: ("output", x * p.get("k", 1))),
    "slow": dict(
        owner="carol", visible_to=["public"], input={"type": "integer"}, output={"type": "integer"}, max_batch_size=2,
        code="import time\n\ndef run(x):\n    time.sleep(0.2)\n    return 2 * x\n",
        expect=lambda x, p: ("output", 2 * x)),
    "physics": dict(
        owner="alice", visible_to=["group:physics"], input={"type": "integer"}, output={"type": "integer"},
        code="def run(x):\n    return x + 1\n",
        expect=lambda x, p: ("output", x + 1)),
    "notes": dict(
        owner="bob", visible_to=["public"], input={"type": "string"}, output={"type": "string"},
        code="def run(x):\n    return x\n",
        expect=lambda x, p: ("output", x)),
}


def servable_archive(name, version_note=""):
    """The upload for a servable: a tar of servable.json and its module, as `dlhub publish` sends."""
    s = SERVABLES[name]
    doc = {
        "datacite": {"titles": [{"title": "Soak servable %s %s" % (name, version_note)}], "creators": [{"creatorName": "Soak, Chaos"}]},
        "dlhub": {"name": name, "visible_to": s["visible_to"], "files": {"other": ["soakfn.py"]}},
        "servable": {
            "shim": "python.PythonStaticMethodServable",
            "methods": {"run": {"input": s["input"], "output": s["output"], "parameters": {},
                                "method_details": {"module": "soakfn", "method_name": "run"}}},
            "timeout": s.get("timeout", 30),
            "batching": {"max_batch_size": s.get("max_batch_size", 16), "max_delay_ms": 5},
            "deterministic": s.get("deterministic", False),
        },
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in (("servable.json", json.dumps(doc, indent=1).encode()),
                           ("soakfn.py", (s["code"] + "# %s\n" % version_note).encode())):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# ================================================================ the record of what happened

class Timeline:
    """Windows of time in which a fault was under way: whether a failure is excused depends on them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.windows = []          # [kind, start, end or None]
        self.counts = collections.Counter()

    def open(self, kind, start=None):
        with self.lock:
            w = [kind, start if start is not None else now(), None]
            self.windows.append(w)
            self.counts[kind] += 1
            return w

    def close(self, w):
        with self.lock:
            w[2] = now()

    def instant(self, kind):
        self.close(self.open(kind))

    def count_overlapping(self, kinds, t0, t1, margin=1.0):
        """How many windows of these kinds overlap [t0, t1]."""
        with self.lock:
            return sum(1 for kind, s, e in self.windows
                       if kind in kinds and s - margin <= t1 and (e is None or e + margin >= t0))

    def overlaps(self, kinds, t0, t1, margin=1.0):
        with self.lock:
            for kind, s, e in self.windows:
                if kind in kinds and s - margin <= t1 and (e is None or e + margin >= t0):
                    return True
        return False


class Ledger:
    """Every request and its outcome, every violation."""

    def __init__(self):
        self.lock = threading.Lock()
        self.outcomes = collections.defaultdict(collections.Counter)   # traffic kind -> outcome -> n
        self.violations = []
        self.notes = collections.Counter()
        self.items = collections.Counter()   # inputs sent, by kind

    def count(self, kind, outcome, n=1):
        with self.lock:
            self.outcomes[kind][outcome] += n

    def violation(self, invariant, kind, message):
        with self.lock:
            self.violations.append((time.strftime("%H:%M:%S"), invariant, kind, message))
        log("VIOLATION [%s] %s" % (kind, message))

    def note(self, what, n=1):
        with self.lock:
            self.notes[what] += n


_log_lock = threading.Lock()
T0 = now()


def log(message):
    with _log_lock:
        print("soak %7.1fs %s" % (now() - T0, message), flush=True)


# ================================================================ dlhubd, started and killed here

class Service:
    """One dlhubd at a time, as the service account, on fixed ports so that clients and pilots
    find it again after a restart."""

    def __init__(self, a, timeline, ledger):
        self.a = a
        self.timeline = timeline
        self.ledger = ledger
        self.lock = threading.RLock()
        self.proc = None
        self.expected_exit = False
        self.incarnation = 0
        self.http_port = free_port()
        self.pilot_port = free_port()
        self.url = "http://127.0.0.1:%d" % self.http_port
        self.log_path = os.path.join(a.workdir, "dlhubd.log")
        self.config = os.path.join(a.workdir, "dlhubd.json")
        self.unexpected_deaths = []
        self.graceful_stops = []     # seconds each SIGTERM took
        self.describe_inflight = lambda: ""   # the requests in flight, for a stop that takes too long (set by Soak)
        self.ready = threading.Event()   # set while a started dlhubd answers
        self.starting = False            # between spawning dlhubd and its first answer
        self.last_alive = now()          # when dlhubd was last seen running
        home = subprocess.run(["getent", "passwd", a.service_user], capture_output=True, text=True).stdout.split(":")[5]
        self.command = [
            "setpriv", "--reuid=" + a.service_user, "--regid=" + a.service_user, "--init-groups",
            "env", "-i", "PATH=/usr/bin:/bin", "HOME=" + home, "SLURM_CONF=" + os.environ["SLURM_CONF"],
            os.path.join(a.prefix, "bin", "dlhubd"), "--registry", os.path.join(a.workdir, "registry"),
            "--state-dir", os.path.join(a.workdir, "state"), "--listen", "127.0.0.1:%d" % self.http_port,
            "--config", self.config, "--log-level", "info"]

    def write_config(self):
        config = {
            "python": self.a.worker_python,
            "pilot_listen": "127.0.0.1:%d" % self.pilot_port,
            "pilots_on_stop": "cancel",
            "pilot_reconnect_grace_seconds": 60,
            "token_ttl_seconds": TOKEN_TTL,
            "http_idle_timeout_seconds": HTTP_IDLE_TIMEOUT,
            "pools": [{"name": POOL, "partition": "cpu", "min_pilots": 1, "max_pilots": MAX_PILOTS,
                       "max_queued_ahead": MAX_QUEUED_AHEAD, "walltime_minutes": 60, "cores_per_node": 2,
                       "idle_timeout_seconds": 120, "max_workers_per_pilot": 6}],
        }
        with open(self.config, "w") as f:
            json.dump(config, f, indent=1)
        os.chmod(self.config, 0o644)

    @property
    def pid(self):
        p = self.proc
        return p.pid if p is not None and p.poll() is None else None

    def start(self):
        """Starts dlhubd (unless one is running) and waits until it answers /healthz. The lock is
        held only to start it: the monitor keeps sampling meanwhile."""
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                return
            self.incarnation += 1
            with open(self.log_path, "a") as f:
                f.write("\n==== soak: dlhubd start #%d at %s\n" % (self.incarnation, time.strftime("%H:%M:%S")))
            out = open(self.log_path, "a")
            self.log_offset = out.tell()
            proc = self.proc = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                start_new_session=True)
            out.close()
            with open(os.path.join(self.a.workdir, "dlhubd.pid"), "w") as f:
                f.write(str(proc.pid))
            self.expected_exit = False
            self.starting = True
        try:
            deadline = now() + 90
            while now() < deadline:
                if proc.poll() is not None:
                    raise SetupError("dlhubd exited at start (%s):\n%s" % (proc.returncode, self.log_tail()))
                try:
                    c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=2)
                    c.request("GET", "/healthz")
                    if c.getresponse().status == 200:
                        c.close()
                        self.ready.set()
                        return
                except (OSError, http.client.HTTPException):
                    pass
                time.sleep(0.1)
            raise SetupError("dlhubd did not answer /healthz within 90 s:\n%s" % self.log_tail())
        finally:
            self.starting = False

    def stop(self, sig, window_kind):
        """Sends `sig` as the injector (so its exit is expected); returns seconds until it was gone."""
        with self.lock:
            p = self.proc
            if p is None or p.poll() is not None:
                return None
            self.expected_exit = True
            self.ready.clear()
            t = now()
            mark = self.log_size()
            inflight = self.describe_inflight() if sig == signal.SIGTERM else ""
            p.send_signal(sig)
        killed = False
        try:
            if sig == signal.SIGKILL:
                try:
                    p.wait(3)
                except subprocess.TimeoutExpired:
                    # A SIGKILLed process that is not gone after 3 s is stuck in the kernel: say where.
                    where = process_state(p.pid)
                    log("dlhubd (pid %d) still there 3 s after SIGKILL: %s" % (p.pid, where))
                    self.ledger.note("kill_dlhubd: dlhubd still there 3 s after SIGKILL")
                    p.wait(7)
            else:
                p.wait(GRACEFUL_STOP_PATIENCE)
        except subprocess.TimeoutExpired:
            killed = True
            p.kill()
            p.wait()
        took = now() - t
        if sig == signal.SIGKILL and took > 3:
            log("dlhubd was gone %.1f s after SIGKILL" % took)
        at_exit = requests_open_across(t, t + GRACEFUL_STOP_SECONDS) if sig == signal.SIGTERM and took > GRACEFUL_STOP_SECONDS else ""
        if sig == signal.SIGTERM and took > GRACEFUL_STOP_SECONDS:
            self.ledger.violation(ALIVE, window_kind, "dlhubd took %s after SIGTERM to stop (bound %d s).%s%s Its log since the signal:\n%s" % (
                "longer than %d s (killed then)" % GRACEFUL_STOP_PATIENCE if killed else "%.1f s" % took, GRACEFUL_STOP_SECONDS,
                (" At the signal: " + inflight + ".") if inflight else "",
                (" What held it: " + at_exit + ".") if at_exit else "", indent(self.log_since(mark, 25))))
        if sig == signal.SIGTERM:
            self.graceful_stops.append(took)
            if p.returncode != 0 and not killed:
                self.ledger.violation(ALIVE, window_kind, "dlhubd exited with status %s after SIGTERM (expected 0). Its log since the signal:\n%s" % (
                    p.returncode, indent(self.log_since(mark, 25))))
            # pilots_on_stop: cancel: a stopping dlhubd cancels its pilot jobs; one it submits
            # meanwhile and does not cancel outlives it (the next start adopts it if it runs by
            # then; without a next start it is left on the cluster).
            since = self.log_since(mark, 10**6)
            submitted = re.findall(r"slurm\.job_id=(\d+)[^\n]*pilot job submitted", since)
            cancelled = set(re.findall(r"slurm\.job_id=(\d+) \[DLHubCluster\] cancelled job", since))
            left = [j for j in submitted if j not in cancelled]
            if left:
                self.ledger.violation(NOLEAK, window_kind, "dlhubd submitted pilot job(s) %s after SIGTERM and stopped without cancelling them "
                                      "(pilots_on_stop=cancel)%s. Its log:\n%s" % (
                    ", ".join(left), "; slurmctld was stopped meanwhile" if self.timeline.overlaps({"stop_slurmctld"}, t, now(), 0) else "",
                    indent("\n".join(l for l in since.splitlines() if "pilot job" in l or "cancelled job" in l
                                      or "Slurm did not answer" in l)[:3000])))
        return took

    def check_alive(self):
        """Called every second: a dlhubd that is gone without the injector's doing is a violation
        (and is started again, so that the rest of the soak still means something)."""
        with self.lock:
            p = self.proc
            if p is not None and p.poll() is None:
                self.last_alive = now()
            if p is None or self.expected_exit or self.starting or p.poll() is None:
                return
            self.expected_exit = True   # charged once
            # It died somewhere since it was last seen alive: the window starts there.
            w = self.timeline.open("crash", start=self.last_alive)
            self.ready.clear()
            tail = self.crash_summary()
            self.unexpected_deaths.append((time.strftime("%H:%M:%S"), p.returncode, tail))
            self.ledger.violation(ALIVE, "dlhubd", "dlhubd (pid %d) died with status %s and nobody killed it; its log ends:\n%s" % (
                p.pid, p.returncode, indent(tail)))
        try:
            self.start()
        except SetupError as e:
            self.ledger.violation(ALIVE, "dlhubd", "dlhubd did not start again after it died: %s" % e)
        finally:
            self.timeline.close(w)

    def crash_summary(self):
        """What a dead dlhubd said last: its fatal error (a Swift trap prints one, then a long
        backtrace) with the lines before it, or the end of its log."""
        text = self.log_tail(100000)
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if "Fatal error" in line or "Program crashed" in line:
                head = lines[max(0, i - 8):i + 1]
                crashed = [l for l in lines[i + 1:] if "Program crashed" in l or " crashed:" in l]
                return "\n".join(head + crashed[:2])
        return "\n".join(lines[-30:])

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_since(self, offset, lines=25):
        """What dlhubd logged after `offset`: the first lines (what it did first) and the last."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        if len(text) > lines:
            text = text[:lines - 5] + ["... (%d lines)" % (len(text) - lines)] + text[-5:]
        return "\n".join(text)

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(getattr(self, "log_offset", 0))
                return b"\n".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def sample(self):
        """(RSS MB, open descriptors, threads) of the running dlhubd, or None."""
        pid = self.pid
        if pid is None:
            return None
        try:
            rss = threads = 0
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1]) / 1024
                    elif line.startswith("Threads:"):
                        threads = int(line.split()[1])
            fds = len(os.listdir("/proc/%d/fd" % pid))
            return rss, fds, threads
        except OSError:
            return None


class SetupError(Exception):
    pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def indent(text, prefix="    "):
    return "\n".join(prefix + line for line in text.splitlines())


# ================================================================ users, as HTTP clients

class ConnectionFailed(Exception):
    """The request got no HTTP answer: refused, reset or timed out."""


class Reply:
    def __init__(self, status, body):
        self.status = status
        self.raw = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def error_message(self):
        e = (self.json or {}).get("error") if isinstance(self.json, dict) else None
        return e.get("message") if isinstance(e, dict) else None


# Every HTTP request of the users awaiting its answer (User.raw): token -> (login, method, path,
# t0), so that a stop that takes long can say what was open at its signal, whatever the request.
HTTP_INFLIGHT = {}
HTTP_INFLIGHT_LOCK = threading.Lock()
HTTP_DONE = collections.deque(maxlen=20000)   # (login, method, path, t0, t1, status or error) of the latest ended ones


def requests_open_across(t_signal, t_after):
    """The users' requests that were still unanswered at `t_after` (sent before the signal or
    after it, while dlhubd still took them): what a graceful stop that took long was holding on
    to (answered late, or cut off when it ended)."""
    with HTTP_INFLIGHT_LOCK:
        done = [d for d in HTTP_DONE if d[3] <= t_after and d[4] >= t_after]
        still = [(login, method, path, t0, None, "still open") for login, method, path, t0 in HTTP_INFLIGHT.values() if t0 <= t_after]
    rows = sorted(done + still, key=lambda d: d[3])
    if not rows:
        return "none of the users' requests was still open %.0f s after the signal" % (t_after - t_signal)
    def sent(t0):
        return "sent %.1f s %s the signal" % (abs(t0 - t_signal), "before" if t0 <= t_signal else "after")
    return "%d of the users' requests still open %.0f s after the signal:%s" % (len(rows), t_after - t_signal, "".join(
        "\n      %s %s %s, %s, %s" % (
            login, method, path[:100], sent(t0), "still open" if t1 is None else "ended %.1f s after it: %s" % (t1 - t_signal, outcome))
        for login, method, path, t0, t1, outcome in rows[:8]))


class User:
    """A Unix user with a bearer token from munge; a 401 (expired or unknown token) gets a new one."""

    def __init__(self, login, service):
        self.login = login
        self.service = service
        self.lock = threading.Lock()
        self.token = None

    def refresh_token(self):
        deadline = now() + 120
        while True:
            try:
                # A credential names the service it is for (dlhubd refuses one that names none).
                health = self.raw("GET", "/healthz", timeout=30)
                audience = "dlhub-service:" + (health.json or {}).get("service_id", "")
                cred = subprocess.run(
                    ["runuser", "-u", self.login, "--", "munge", "-s", audience], capture_output=True, text=True, check=True
                ).stdout.strip()
                r = self.raw("POST", "/v1/auth/token", headers={"Authorization": "Munge " + cred}, timeout=30)
                if r.status == 201:
                    self.token = r.json["token"]
                    return
                raise SetupError("token for %s: HTTP %d %s" % (self.login, r.status, r.raw[:300]))
            except ConnectionFailed:
                # dlhubd is being restarted by the injector: a token is not a request, so wait for it.
                if now() > deadline:
                    raise
                time.sleep(0.5)

    def raw(self, method, path, body=None, headers=None, timeout=60):
        c = http.client.HTTPConnection("127.0.0.1", self.service.http_port, timeout=timeout)
        token = object()
        outcome = "no answer"
        with HTTP_INFLIGHT_LOCK:
            HTTP_INFLIGHT[token] = (self.login, method, path, now())
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            reply = Reply(r.status, r.read())
            outcome = "HTTP %d" % r.status
            return reply
        except (OSError, http.client.HTTPException) as e:
            outcome = "no answer (%s)" % (e or type(e).__name__)
            raise ConnectionFailed("%s %s: %s" % (method, path, e or type(e).__name__))
        finally:
            with HTTP_INFLIGHT_LOCK:
                login, method, path, t0 = HTTP_INFLIGHT.pop(token)
                HTTP_DONE.append((login, method, path, t0, now(), outcome))
            c.close()

    def call(self, method, path, body=None, timeout=60, content_type="application/json"):
        with self.lock:
            if self.token is None:
                self.refresh_token()
            token = self.token
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        headers = {"Authorization": "Bearer " + token}
        if body is not None:
            headers["Content-Type"] = content_type
        r = self.raw(method, path, body, headers, timeout)
        if r.status == 401:
            # Not accepted, so sending it again hides nothing.
            with self.lock:
                if self.token == token:
                    self.refresh_token()
                token = self.token
            headers["Authorization"] = "Bearer " + token
            r = self.raw(method, path, body, headers, timeout)
        return r


# ================================================================ accepted tasks, followed to their end

class TaskTracker:
    """Every task id the service handed out, polled until it is finished; its first finished
    document is its answer, and it must not change afterwards."""

    def __init__(self, soak):
        self.soak = soak
        self.lock = threading.Lock()
        self.tasks = {}   # id -> dict(user, kind, servable, inputs, single, parameters, t0, doc, done_at)

    def add(self, task_id, **info):
        with self.lock:
            if task_id in self.tasks:
                self.soak.ledger.violation(ANSWERED, info["kind"], "task id %s handed out twice" % task_id)
                return
            info.update(doc=None, done_at=None, last_status=None)
            self.tasks[task_id] = info

    def pending(self):
        with self.lock:
            return [(i, t) for i, t in self.tasks.items() if t["doc"] is None]

    def poll_once(self):
        for task_id, t in self.pending():
            try:
                r = self.soak.users[t["user"]].call("GET", "/v1/tasks/" + task_id, timeout=30)
            except ConnectionFailed:
                continue   # dlhubd is away; the task is durable, ask again later
            if r.status == 200 and isinstance(r.json, dict) and r.json.get("status") in FINISHED:
                t["doc"], t["done_at"] = r.json, now()
                self.soak.ledger.count(t["kind"], "task finished")
                self.soak.ended(t["kind"], t["t0"], t["done_at"], "%s, %d input(s), task %s %s" % (
                    t["servable"], len(t["inputs"]), task_id, r.json.get("status")))
                self.soak.check_answer(t["kind"], t["servable"], t["inputs"], t["single"], t["parameters"], r.json, t["t0"], now())
            elif r.status == 202 and isinstance(r.json, dict):
                t["last_status"] = r.json.get("status")
            elif r.status == 404:
                t["doc"], t["done_at"] = {"status": "lost"}, now()
                self.soak.ledger.violation(ANSWERED, t["kind"], "accepted task %s of %s is gone (404): %s" % (task_id, t["user"], r.raw[:200]))
            elif r.status >= 500:
                self.soak.ledger.violation(ANSWERED, t["kind"], "GET /v1/tasks/%s: HTTP %d %s" % (task_id, r.status, r.raw[:200]))
            else:
                t["last_status"] = "HTTP %d" % r.status

    def run(self, stop):
        while not stop.is_set():
            self.poll_once()
            stop.wait(0.5)


# ================================================================ the soak

class Soak:
    def __init__(self, a):
        self.a = a
        self.seed = a.seed
        self.timeline = Timeline()
        self.ledger = Ledger()
        self.service = Service(a, self.timeline, self.ledger)
        self.users = {u: User(u, self.service) for u in USERS}
        self.tracker = TaskTracker(self)
        self.traffic_stop = threading.Event()
        self.end = threading.Event()
        self.published = {}        # name -> (owner, [versions])
        self.answered_ids = []     # (user, kind, id) of every 200
        self.conn_failures = []    # (kind, t0, t1, error) of every request that got no answer
        self.samples = []          # (t, rss, fds, threads, incarnation)
        self.killed_workers = []   # (t, "owner/name") of every worker the injector killed
        self.inflight = {}         # token -> (kind, servable, wait, t0): run requests awaiting their HTTP answer
        self.ends = collections.defaultdict(list)   # kind -> [(seconds from sending to the end, what)]
        self.service.describe_inflight = self.describe_inflight
        self.peaks = {"rss_mb": 0.0, "fds": 0, "threads": 0, "pilot_jobs": 0}
        self.baseline_fds = None
        self.slurmctld_down = threading.Event()
        self.slurmctld_thread = None
        # Stopping and starting slurmctld, and the final clean-up, take turns: once the soak is
        # aborted (Ctrl-C, SIGTERM) no fault stops it again, and a stopped one is started.
        self.slurmctld_lock = threading.Lock()
        self.aborted = False
        self.flood_sizes = []
        self.preexisting_jobs = set()
        self.pilot_jobs_seen = set()   # every pilot job id the monitor saw
        self.pilot_jobs_left = None    # after the final graceful stop
        self.worker_fds_checked = 0    # worker processes whose descriptors were looked at
        self.worker_fd_breaches = set()
        self.workdir_users = os.path.join(a.workdir, "users")
        self.straggler_seconds = STRAGGLER_SECONDS_SHORT if a.seconds <= SHORT_RUN_SECONDS else STRAGGLER_SECONDS

    # ------------------------------------------------ the answer to a run, checked

    def check_answer(self, kind, servable, inputs, single, parameters, doc, t0, t1):
        """Outputs must be what the function computes; errors where one is expected must say
        something; an error where an output was due is excused only by a worker killed meanwhile."""
        status = doc.get("status")
        if status not in FINISHED:
            self.ledger.violation(ANSWERED, kind, "answer with status %r is not a finished task: %s" % (status, short(doc)))
            return
        if single:
            results = [("error", doc.get("error")) if doc.get("error") is not None else ("output", doc.get("output"))]
        else:
            outputs = doc.get("outputs")
            errors = doc.get("errors") or [None] * len(inputs)
            if not isinstance(outputs, list) or len(outputs) != len(inputs) or len(errors) != len(inputs):
                self.ledger.violation(ANSWERED, kind, "%s: %d inputs but the answer holds %s outputs / %s errors: %s" % (
                    servable, len(inputs), len(outputs) if isinstance(outputs, list) else outputs, len(errors), short(doc)))
                return
            results = [("error", e) if e is not None else ("output", o) for o, e in zip(outputs, errors)]
        expect = SERVABLES[servable]["expect"]
        for x, (got, value) in zip(inputs, results):
            want, wanted = expect(x, parameters or {})
            if got == "output":
                if want == "error":
                    self.ledger.violation(OUTPUTS, kind, "%s(%r) should fail but answered %r" % (servable, x, value))
                elif value != wanted:
                    self.ledger.violation(OUTPUTS, kind, "%s(%r) answered %r, expected %r (task %s)" % (servable, x, value, wanted, doc.get("id")))
                else:
                    self.ledger.count(kind, "outputs correct")
                continue
            if not isinstance(value, str) or not value.strip():
                self.ledger.violation(OUTPUTS, kind, "%s(%r) failed with an empty message: %r" % (servable, x, value))
            elif want == "error":
                self.ledger.count(kind, "errors as expected")
            elif status == "cancelled" and "cancelled" in value:
                self.ledger.count(kind, "cancelled items")
            elif self.timeline.overlaps({"kill_worker"}, t0, t1):
                self.ledger.count(kind, "errors excused: a worker was killed")
            elif "pilot jobs that were lost" in value and self.timeline.count_overlapping(PILOT_LOSING_FAULTS, t0, t1) >= 3:
                # docs/requests.md: an item that was running on 3 lost pilots (scancel, a graceful
                # stop with pilots_on_stop=cancel, a dlhubd that died: it runs again at most three
                # times) fails. Excused only if the injector did at least that much meanwhile.
                self.ledger.count(kind, "errors excused: 3 of its pilots were lost")
            else:
                owner = SERVABLES[servable]["owner"]
                earlier = [t for t, name in self.killed_workers if name == "%s/%s" % (owner, servable) and t < t0]
                if earlier and "exit status 137" in value:
                    # Seen: the injector killed an idle worker; the pilot then gave it a one-item
                    # batch and failed the item, though the item never ran (it did not crash it).
                    self.ledger.violation(OUTPUTS, kind, "%s(%r) failed: %s (task %s); the injector had SIGKILLed an idle worker of "
                                          "%s/%s %.1f s before this request was sent: the item was given to that dead worker and "
                                          "failed, not run on a fresh one (docs/requests.md: only the items that crash a worker fail)" % (
                                              servable, x, value[:300], doc.get("id"), owner, servable, t0 - max(earlier)))
                else:
                    self.ledger.violation(OUTPUTS, kind, "%s(%r) failed though nothing was done to its worker: %s (task %s)" % (
                        servable, x, value[:300], doc.get("id")))

    def ended(self, kind, t0, t1, what):
        """A request reached its end (a 200, a finished task, a completed bulk run): how long it took."""
        with self.ledger.lock:
            self.ends[kind].append((t1 - t0, what))

    def describe_inflight(self):
        """The run requests waiting for their HTTP answer, and when the longest wait runs out."""
        t = now()
        with self.ledger.lock:
            waits = [(t0 + w - t, kind, servable, w, t - t0) for kind, servable, w, t0 in self.inflight.values() if w]
            n = sum(1 for v in self.inflight.values() if v[0] != "bulk")
            bulk = n_bulk = sum(1 for v in self.inflight.values() if v[0] == "bulk")
        with HTTP_INFLIGHT_LOCK:
            open_requests = sorted(HTTP_INFLIGHT.values(), key=lambda v: v[3])
        listed = "; HTTP requests of the users open: %d%s" % (len(open_requests), "".join(
            "\n      %s %s %s (sent %.1f s before)" % (login, method, path[:100], t - t0) for login, method, path, t0 in open_requests[:8]))
        if not n and not bulk:
            return "no run request in flight" + listed
        text = "%d run request(s) in flight, %d with ?wait=" % (n, len(waits))
        if waits:
            left, kind, servable, w, age = max(waits)
            text += "; the longest runs out %.0f s after the signal (%s, %s?wait=%g, sent %.1f s before)" % (left, kind, servable, w, age)
        if n_bulk:
            text += "; %d bulk run(s) (dlhub run --inputs long-polls GET /v1/tasks/ID?wait=30)" % n_bulk
        return text + listed

    def connection_failed(self, kind, t0, error):
        """A request that got no answer. Judged at the end (classify_connection_failures), when
        every fault's window is known: a crash is noticed only a moment after it happened."""
        with self.ledger.lock:
            self.conn_failures.append((kind, t0, now(), str(error)))

    def classify_connection_failures(self):
        """Allowed only while the injector was stopping dlhubd; during a crash they are counted
        apart (the crash is the violation); at any other time each one is a violation."""
        for kind, t0, t1, error in self.conn_failures:
            if self.timeline.overlaps({"kill_dlhubd", "term_dlhubd"}, t0, t1):
                self.ledger.count(kind, "no answer: dlhubd was being killed (allowed)")
            elif self.timeline.overlaps({"crash"}, t0, t1):
                self.ledger.count(kind, "no answer: dlhubd had crashed (see its violation)")
            else:
                self.ledger.violation(ANSWERED, kind, "no answer though dlhubd was not being killed (%.1f s): %s" % (t1 - t0, error))

    def run_request(self, kind, user, servable, inputs, single, wait=None, parameters=None, cache=None, owner=None):
        """POST .../run and follow the answer: a 200 is checked now, a 202 is tracked to its end."""
        owner = owner or SERVABLES[servable]["owner"]
        body = {"input": inputs[0]} if single else {"inputs": inputs}
        if parameters is not None:
            body["parameters"] = parameters
        if cache is not None:
            body["cache"] = cache
        path = "/v1/servables/%s/%s/run" % (owner, servable) + ("?wait=%g" % wait if wait is not None else "")
        self.ledger.count(kind, "sent")
        with self.ledger.lock:
            self.ledger.items[kind] += len(inputs)
        t0 = now()
        token = object()
        with self.ledger.lock:
            self.inflight[token] = (kind, "%s/%s" % (owner, servable), wait, t0)
        try:
            r = self.users[user].call("POST", path, body, timeout=(wait or 0) + 60)
        except ConnectionFailed as e:
            self.connection_failed(kind, t0, e)
            return None
        finally:
            with self.ledger.lock:
                del self.inflight[token]
        if r.status == 200 and isinstance(r.json, dict):
            self.ledger.count(kind, "answered (200)")
            self.ended(kind, t0, now(), "%s/%s, %d input(s), a 200 to ?wait=%s (task %s)" % (owner, servable, len(inputs), wait, r.json.get("id")))
            with self.ledger.lock:
                self.answered_ids.append((user, kind, r.json.get("id")))
            self.check_answer(kind, servable, inputs, single, parameters, r.json, t0, now())
        elif r.status == 202 and isinstance(r.json, dict) and r.json.get("id"):
            self.ledger.count(kind, "accepted (202)")
            self.tracker.add(r.json["id"], user=user, kind=kind, servable=servable, inputs=inputs, single=single,
                             parameters=parameters, t0=t0)
        elif r.status == 429:
            self.ledger.count(kind, "refused: over quota (429)")
        else:
            self.ledger.violation(ANSWERED, kind, "%s %s by %s: HTTP %d %s" % (servable, "input" if single else "%d inputs" % len(inputs), user, r.status, r.raw[:300]))
        return r

    # ------------------------------------------------ traffic kinds

    def traffic_sync(self, user, rng):
        """A waiting request with known answers; short waits run out and become tasks."""
        xs = [rng.randint(-10**6, 10**6) for _ in range(rng.choice([1, 1, 3, 10, 50]))]
        self.run_request("sync", user, "double", xs, single=len(xs) == 1 and rng.random() < 0.5, wait=rng.choice([0.5, 2, 5, 15, 30]))

    def traffic_async(self, user, rng):
        """No wait: a task id at once, durable before the 202."""
        xs = [rng.randint(-10**6, 10**6) for _ in range(rng.choice([1, 5, 20]))]
        self.run_request("async", user, rng.choice(["double", "double", "slow"]), xs, single=len(xs) == 1)

    def traffic_cached(self, user, rng):
        """A deterministic servable over a small input set: most answers come from the memo cache."""
        xs = [rng.randint(0, 30) for _ in range(rng.choice([1, 1, 4]))]
        self.run_request("cached", user, "square", xs, single=len(xs) == 1, wait=rng.choice([5, 30]),
                         cache=rng.choice([None, True, True, False]))

    def traffic_crash(self, user, rng):
        """Inputs that kill the worker among inputs that must still be answered."""
        xs = [rng.choice(["crash", "fine", "ok", "crash", "hello"]) for _ in range(rng.choice([1, 3, 6]))]
        self.run_request("crash", user, "fragile", xs, single=len(xs) == 1, wait=rng.choice([10, 30, None]))

    def traffic_hang(self, user, rng):
        """Inputs that hang past the servable's timeout among inputs that must still be answered."""
        xs = [rng.choice(["hang", "fine", "ok"]) for _ in range(rng.choice([1, 3]))]
        self.run_request("hang", user, "sleepy", xs, single=len(xs) == 1, wait=rng.choice([10, 30, None]))

    def traffic_fail_load(self, user, rng):
        """A servable whose module raises at import: every input fails, and says why."""
        xs = [rng.randint(0, 100) for _ in range(rng.choice([1, 2]))]
        self.run_request("fail_load", user, "broken", xs, single=len(xs) == 1, wait=rng.choice([5, 20, None]))

    def traffic_params(self, user, rng):
        """Parameters churn: each distinct parameter object is a queue (and worker) of its own."""
        parameters = {"k": rng.randint(-5, 40)}
        if rng.random() < 0.5:
            parameters["salt"] = "".join(rng.choice(string.ascii_lowercase) for _ in range(6))
        xs = [rng.randint(-1000, 1000) for _ in range(rng.choice([1, 4]))]
        self.run_request("params", user, "scale", xs, single=len(xs) == 1, wait=rng.choice([10, 30, None]), parameters=parameters)

    def traffic_cancel(self, user, rng):
        """A slow task cancelled by its owner (what ran keeps its results), then cancelled again."""
        xs = [rng.randint(0, 1000) for _ in range(rng.choice([4, 10, 20]))]
        r = self.run_request("cancel", user, "slow", xs, single=False)
        if r is None or r.status != 202:
            return
        task_id = r.json["id"]
        time.sleep(rng.uniform(0, 1.5))
        for attempt in range(2):
            t0 = now()
            try:
                c = self.users[user].call("POST", "/v1/tasks/%s/cancel" % task_id, timeout=30)
            except ConnectionFailed as e:
                self.connection_failed("cancel", t0, e)
                return
            if c.status == 200:
                self.ledger.count("cancel", "cancel accepted (200)")
            elif c.status == 409:
                self.ledger.count("cancel", "cancel: already finished (409)")
            else:
                self.ledger.violation(ANSWERED, "cancel", "cancel of %s: HTTP %d %s" % (task_id, c.status, c.raw[:200]))
            # Someone else's cancel of the same task: the same 404 as for no task at all.
            other = rng.choice([u for u in USERS if u != user])
            try:
                o = self.users[other].call("POST", "/v1/tasks/%s/cancel" % task_id, timeout=30)
                if o.status != 404:
                    self.ledger.violation(REFUSED, "cancel", "%s cancelled %s's task %s: HTTP %d" % (other, user, task_id, o.status))
            except ConnectionFailed as e:
                self.connection_failed("cancel", now(), e)

    def traffic_access(self, user, rng):
        """A servable visible to group physics: alice (owner) and carol run it, bob gets a 404."""
        x = rng.randint(0, 1000)
        if user == "bob":
            self.bad_request("access", user, "POST", "/v1/servables/alice/physics/run?wait=5", {"input": x}, want=404)
            self.bad_request("access", user, "GET", "/v1/servables/alice/physics", None, want=404)
        else:
            self.run_request("access", user, "physics", [x], single=True, wait=20)

    def traffic_publish(self, user, rng):
        """bob publishes a new version of bob/notes: each 201's version must stay describable."""
        t0 = now()
        self.ledger.count("publish", "sent")
        try:
            r = self.users["bob"].call("POST", "/v1/servables", servable_archive("notes", "v%d" % rng.randint(0, 10**9)),
                                      timeout=60, content_type="application/x-tar")
        except ConnectionFailed as e:
            self.connection_failed("publish", t0, e)
            return
        if r.status == 201:
            self.ledger.count("publish", "published (201)")
            with self.ledger.lock:
                self.published["notes"][1].append(r.json["version"])
        else:
            self.ledger.violation(AGREE, "publish", "publishing bob/notes: HTTP %d %s" % (r.status, r.raw[:300]))

    def bad_request(self, kind, user, method, path, body, want=None):
        """A request that must be refused with a 4xx and an error document, never a 5xx or a hang."""
        self.ledger.count(kind, "sent")
        t0 = now()
        try:
            r = self.users[user].call(method, path, body, timeout=60)
        except ConnectionFailed as e:
            self.connection_failed(kind, t0, e)
            return
        message = r.error_message()
        if 400 <= r.status < 500 and message and (want is None or r.status == want):
            self.ledger.count(kind, "refused as it should (4xx)")
        else:
            self.ledger.violation(REFUSED, kind, "%s %s %r by %s: expected %s with an error message, got HTTP %d %s" % (
                method, path, body if not isinstance(body, bytes) else body[:80], user, want or "4xx", r.status, r.raw[:200]))

    def traffic_bad_input(self, user, rng):
        """Wrong types and shapes, malformed JSON, misused fields, unknown servables."""
        run = "/v1/servables/alice/double/run?wait=5"
        cases = [
            (run, {"input": "not a number"}),
            (run, {"input": [1, 2]}),
            (run, {"inputs": []}),
            (run, {"inputs": 7}),
            (run, {"input": 1, "inputs": [1]}),
            (run, {}),
            (run, {"input": 1, "parameters": [1]}),
            (run, {"input": 1, "cache": "yes"}),
            (run, b'{"input": 1'),
            (run, b'\xff\xfe garbage'),
            (run, b'[1, 2, 3]'),
            (run, {"inputs": [1, 2, "three"]}),
            ("/v1/servables/alice/double/run?wait=-1", {"input": 1}),
            ("/v1/servables/alice/double/run?wait=soon", {"input": 1}),
            ("/v1/servables/alice/no-such-servable/run?wait=5", {"input": 1}),
            ("/v1/servables/bob/fragile/run", {"input": 3}),
            ("/v1/servables/carol/square/run?wait=5", {"input": 1.5}),
        ]
        path, body = rng.choice(cases)
        self.bad_request("bad_input", user, "POST", path, body)

    def traffic_bulk(self, user, rng):
        """`dlhub run ID --inputs F.jsonl --output O.jsonl` as the user: one correct line per input.
        Rerunning the same command after an interruption is the CLI's documented resume."""
        n = rng.randint(50, 400)
        xs = [rng.randint(-10**6, 10**6) for _ in range(n)]
        d = os.path.join(self.workdir_users, user)
        tag = "%d-%d" % (threading.get_ident(), rng.randint(0, 10**9))
        inp, out = os.path.join(d, "in-%s.jsonl" % tag), os.path.join(d, "out-%s.jsonl" % tag)
        with open(inp, "w") as f:
            f.write("".join("%d\n" % x for x in xs))
        self.ledger.count("bulk", "sent")
        with self.ledger.lock:
            self.ledger.items["bulk"] += n
        command = ["runuser", "-u", user, "--", "env", "-i", "PATH=/usr/bin:/bin", "HOME=/home/" + user,
                   "DLHUB_URL=" + self.service.url, os.path.join(self.a.prefix, "bin", "dlhub"), "run", "alice/double",
                   "--inputs", inp, "--output", out, "--chunk", str(rng.choice([25, 100, 1000]))]
        t0 = now()
        deadline = t0 + 300
        token = object()
        with self.ledger.lock:
            self.inflight[token] = ("bulk", "alice/double", None, t0)
        try:
            ok = self.bulk_loop(n, xs, command, out, t0, deadline)
        finally:
            with self.ledger.lock:
                del self.inflight[token]
        for path in (inp, out, out + ".progress") if ok else ():   # kept for a look when it went wrong
            try:
                os.remove(path)
            except OSError:
                pass

    def bulk_loop(self, n, xs, command, out, t0, deadline):
        """Runs (and after an injected kill, reruns) the bulk command and checks its output."""
        while True:
            ta = now()
            try:
                p = subprocess.run(command, capture_output=True, text=True, timeout=max(1, deadline - now()))
            except subprocess.TimeoutExpired:
                self.ledger.violation(ANSWERED, "bulk", "dlhub run --inputs (%d inputs) did not finish in 300 s" % n)
                return False
            if p.returncode == 0:
                break
            time.sleep(2)   # a crash is noticed within a second of it
            if not self.timeline.overlaps({"kill_dlhubd", "term_dlhubd", "crash"}, ta, now()):
                self.ledger.violation(ANSWERED, "bulk", "dlhub run --inputs (%d inputs) failed (status %d) though dlhubd was not being killed: %s" % (
                    n, p.returncode, (p.stderr or p.stdout)[-400:]))
                return False
            # Interrupted by the injector: the same command again resumes, once dlhubd is back.
            self.ledger.count("bulk", "resumed after dlhubd was killed")
            if not self.service.ready.wait(max(1, deadline - now())):
                self.ledger.violation(ANSWERED, "bulk", "dlhubd did not come back for dlhub run --inputs to resume")
                return False
        with open(out) as f:
            lines = [json.loads(line) for line in f if line.strip()]
        if len(lines) != n:
            self.ledger.violation(ANSWERED, "bulk", "%d inputs but %d output lines in %s" % (n, len(lines), out))
            return False
        self.ledger.count("bulk", "completed")
        self.ended("bulk", t0, now(), "dlhub run --inputs, %d inputs" % n)
        wrong = 0
        for x, line in zip(xs, lines):
            if "output" in line:
                if line["output"] != 2 * x:
                    wrong += 1
                    if wrong <= 3:
                        self.ledger.violation(OUTPUTS, "bulk", "line for %d says %r, expected %d" % (x, line, 2 * x))
                else:
                    self.ledger.count("bulk", "outputs correct")
            elif self.timeline.overlaps({"kill_worker"}, t0, now()):
                self.ledger.count("bulk", "errors excused: a worker was killed")
            else:
                self.ledger.violation(OUTPUTS, "bulk", "line for %d is an error though nothing was done to its worker: %s" % (x, str(line)[:200]))
        return True

    TRAFFIC_WEIGHTS = {"sync": 30, "async": 12, "cached": 12, "bad_input": 10, "crash": 6, "hang": 4, "fail_load": 4,
                       "params": 10, "cancel": 5, "access": 4, "publish": 2, "bulk": 3}

    def user_loop(self, user, rng):
        kinds = [k for k in self.TRAFFIC_WEIGHTS if k in self.a.traffic]
        weights = [self.TRAFFIC_WEIGHTS[k] for k in kinds]
        while not self.traffic_stop.is_set():
            kind = rng.choices(kinds, weights)[0]
            try:
                getattr(self, "traffic_" + kind)(user, rng)
            except Exception:
                self.ledger.violation(HARNESS, kind, "the soak's own traffic code failed: %s" % traceback.format_exc()[-800:])
            self.traffic_stop.wait(rng.uniform(0, 0.3))

    # ------------------------------------------------ fault kinds

    def fault_kill_worker(self, rng, p):
        """SIGKILL one resident worker (a python under bwrap, below one of this soak's pilots)."""
        workers = sorted(worker_pids(self.a.prefix))
        if not workers:
            self.ledger.note("kill_worker: no worker to kill")
            return
        pid = workers[rng.randrange(len(workers))]
        servable = worker_servable(pid)
        self.timeline.instant("kill_worker")
        try:
            os.kill(pid, signal.SIGKILL)
            with self.ledger.lock:
                self.killed_workers.append((now(), servable))
            log("fault: SIGKILL worker %d (of %d; %s)" % (pid, len(workers), servable or "servable unknown"))
        except ProcessLookupError:
            pass

    def fault_cancel_pilot(self, rng, p):
        """scancel one of this soak's pilot jobs, running or pending."""
        # scancel needs slurmctld: wait for it if another fault has it stopped.
        for _ in range(600):
            if not self.slurmctld_down.is_set():
                break
            time.sleep(0.1)
        jobs = self.pilot_jobs(states="PD,R,CF")
        if jobs is None:
            self.ledger.note("cancel_pilot: Slurm did not answer")
            return
        jobs = sorted(jobs)
        if not jobs:
            self.ledger.note("cancel_pilot: no pilot job to cancel")
            return
        job = jobs[rng.randrange(len(jobs))]
        self.timeline.instant("cancel_pilot")
        subprocess.run(["scancel", str(job)], capture_output=True)
        log("fault: scancel pilot job %s" % job)

    def fault_kill_dlhubd(self, rng, p):
        """SIGKILL dlhubd, leave it dead a moment, start it again: accepted tasks must survive."""
        w = self.timeline.open("kill_dlhubd")
        try:
            self.service.stop(signal.SIGKILL, "kill_dlhubd")
            log("fault: SIGKILL dlhubd; down for %.1f s" % p["down"])
            time.sleep(p["down"])
            self.service.start()
        finally:
            self.timeline.close(w)

    def fault_term_dlhubd(self, rng, p):
        """SIGTERM dlhubd (a graceful stop, bounded), then start it again."""
        w = self.timeline.open("term_dlhubd")
        try:
            took = self.service.stop(signal.SIGTERM, "term_dlhubd")
            log("fault: SIGTERM dlhubd; it stopped in %.1f s" % (took or 0))
            time.sleep(p["down"])
            self.service.start()
        finally:
            self.timeline.close(w)

    def fault_stop_slurmctld(self, rng, p):
        """Stop slurmctld for a while (in the background: other faults go on meanwhile). It is
        started again whatever happens: by the restart thread, or by the clean-up (abort)."""
        pidfile = os.path.join(self.a.cluster_dir, "run", "slurmctld.pid")
        with self.slurmctld_lock:
            if self.aborted:
                return
            if self.slurmctld_down.is_set():
                self.ledger.note("stop_slurmctld: already stopped")
                return
            try:
                pid = int(open(pidfile).read().strip())
                os.kill(pid, 0)
            except (OSError, ValueError):
                self.ledger.note("stop_slurmctld: no running slurmctld")
                return
            w = self.timeline.open("stop_slurmctld")
            self.slurmctld_down.set()
            os.kill(pid, signal.SIGTERM)
        for _ in range(150):
            if not os.path.exists("/proc/%d" % pid):
                break
            time.sleep(0.1)
        log("fault: slurmctld stopped for %d s" % p["down"])

        def restart():
            self.end.wait(p["down"])   # the soak's end (or an abort) cuts the pause short
            with self.slurmctld_lock:
                if self.slurmctld_down.is_set():
                    ok = start_slurmctld(self.a.cluster_dir)
                    self.slurmctld_down.clear()
                    if not ok:
                        self.ledger.violation(HARNESS, "stop_slurmctld", "slurmctld did not start again (see %s/log/slurmctld.log)" % self.a.cluster_dir)
            self.timeline.close(w)
            log("fault: slurmctld started again")
        self.slurmctld_thread = threading.Thread(target=restart, daemon=True)
        self.slurmctld_thread.start()

    def node_keeper(self):
        """Resumes nodes that Slurm drained as "Kill task failed" because of the injector: a step
        that ends while slurmctld is stopped cannot report its end, and its slurmstepd gives up
        after UnkillableStepTimeout (60 s) although its processes are gone (slurmd's log: "failed
        sending step completion message ... retrying", then "STEPD TERMINATED ... DUE TO JOB NOT
        ENDING WITH SIGNALS"). An admin would resume such a node; left drained, every pilot job
        stays PENDING and requests wait for Slurm, which the service does not bound (found by the
        one-hour soak, seed 4: all three cpu nodes drained within 20 minutes)."""
        env = dict(os.environ, SLURM_CONF=os.path.join(self.a.cluster_dir, "etc", "slurm.conf"))
        while not self.end.wait(5):
            if self.slurmctld_down.is_set():
                continue
            p = subprocess.run(["sinfo", "-h", "-R", "-o", "%N|%E"], capture_output=True, text=True, env=env)
            for line in p.stdout.splitlines():
                nodes, _, reason = line.partition("|")
                if "Kill task failed" not in reason:
                    continue
                r = subprocess.run(["scontrol", "update", "nodename=" + nodes.strip(), "state=resume"], capture_output=True, text=True, env=env)
                if r.returncode == 0:
                    log("cluster: resumed %s, drained by Slurm as 'Kill task failed' after a step ended while slurmctld was stopped" % nodes.strip())
                    self.ledger.note("nodes resumed after Slurm drained them (Kill task failed while slurmctld was stopped)")

    def abort(self):
        """Leaves the machine as the soak found it, whenever the soak ends: slurmctld running,
        no dlhubd of its own. Called from main's finally (normal end, error, Ctrl-C, SIGTERM)."""
        self.end.set()
        self.traffic_stop.set()
        with self.slurmctld_lock:
            self.aborted = True
            if self.slurmctld_down.is_set():
                start_slurmctld(self.a.cluster_dir)
                self.slurmctld_down.clear()
        if self.service.pid:
            self.service.expected_exit = True
            self.service.proc.kill()

    def flood(self, kind, port, p):
        """Hundreds to thousands of connections that are idle, trickle a byte a second, send
        garbage or close their sending half, for a while; then closed. They come from other
        addresses than the users' (127.0.0.2 and up: other hosts), one or many: dlhubd must keep
        serving the users, cut the flood off after the port's limit, and give its descriptors back."""
        # A flood at a dlhubd that is stopping or starting (the other lane's doing) tests nothing.
        if not self.service.ready.wait(60) or self.traffic_stop.is_set():
            self.ledger.note("%s: dlhubd was not up for it" % kind)
            return
        w = self.timeline.open(kind)
        incarnation = self.service.incarnation
        before = (self.service.sample() or (0, 0, 0))[1]
        rng = random.Random(p["seed"])
        socks = []
        peak = before
        try:
            peak = self.flood_hold(kind, port, p, rng, socks, before)
            # Slow clients are cut off on both ports: connections that outlived the port's limit
            # should have been closed by dlhubd by now.
            # Judged on dlhubd's side: a connection that only the flood's side thinks is open (a
            # SYN cookie whose last ACK the kernel dropped while the listener's accept queue was
            # full) never reached dlhubd, which cannot cut off what it was never given.
            cutoff = HTTP_IDLE_TIMEOUT if kind == "flood_http" else PILOT_HANDSHAKE_SECONDS
            still_open = sum(1 for s, _, _ in socks if peer_still_open(s))
            held, queued = server_side_open(port, [a for _, _, a in socks])
            self.ledger.note("%s: %d of %d connections still open after %d s (dlhubd's side: %d accepted, %d in its accept queue)" % (
                kind, still_open, len(socks), p["seconds"], held, queued))
            if (p["seconds"] > cutoff + 5 and held + queued > len(socks) // 20 and self.service.incarnation == incarnation
                    and not self.timeline.overlaps({"crash"}, w[1], now())):
                self.ledger.violation(BOUNDED, kind, "%d of %d flood connections were still open on dlhubd's side after %d s (the port cuts "
                                      "strangers off after %d s): %d accepted by dlhubd and not closed, %d never accepted (waiting in its "
                                      "accept queue)%s; %d open as the flood sees them" % (
                    held + queued, len(socks), p["seconds"], cutoff, held, queued,
                    "; slurmctld was stopped meanwhile" if self.timeline.overlaps({"stop_slurmctld"}, w[1], now(), 0) else "", still_open))
        finally:
            for s, _, _ in socks:
                s.close()
            self.timeline.close(w)
        self.flood_sizes.append(len(socks))
        if self.service.incarnation != incarnation:
            # dlhubd was restarted meanwhile (the other lane of faults): its descriptors then
            # are not comparable with the ones before.
            self.ledger.note("%s: dlhubd restarted during the flood; descriptors not compared" % kind)
            log("fault: %s over (dlhubd was restarted meanwhile)" % kind)
            return
        # The descriptors the flood cost must be given back.
        settle = now() + FD_SETTLE_SECONDS
        after = None
        while now() < settle and not self.end.is_set():
            sample = self.service.sample()
            after = sample[1] if sample else None
            if after is not None and after <= before + FD_SLACK_AFTER_FLOOD:
                break
            time.sleep(1)
        log("fault: %s over: dlhubd descriptors %d before, %d peak, %s after" % (kind, before, peak, after))
        self.ledger.note("%s: descriptors before/peak/after = %d/%d/%s" % (kind, before, peak, after))
        if (after is not None and after > before + FD_SLACK_AFTER_FLOOD and self.service.incarnation == incarnation
                and not self.timeline.overlaps({"crash"}, w[1], now())):
            self.ledger.violation(BOUNDED, kind, "dlhubd held %d descriptors %d s after the flood ended (%d before it, peak %d)" % (
                after, FD_SETTLE_SECONDS, before, peak))

    def flood_hold(self, kind, port, p, rng, socks, before):
        """Opens the flood's connections into `socks` and keeps them up for p["seconds"];
        returns dlhubd's peak descriptor count meanwhile."""
        behaviours = collections.Counter()
        sources = ["127.0.0.%d" % (2 + i) for i in range(p.get("sources", 1))]
        for i in range(p["count"]):
            if self.end.is_set():
                break
            b = rng.choice(p["behaviours"])
            s = socket.socket()
            s.setblocking(False)
            try:
                s.bind((sources[i % len(sources)], 0))
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            except OSError:
                self.ledger.note("%s: connections refused" % kind)
                s.close()
                continue
            socks.append((s, b, s.getsockname()))
            behaviours[b] += 1
        # Wait (up to 2 s) until the connections are established. Descriptors beyond 1024: poll, not select.
        poller = select.poll()
        waiting = {}
        for s, _, _ in socks:
            poller.register(s, select.POLLOUT)
            waiting[s.fileno()] = s
        deadline = now() + 2
        while waiting and now() < deadline:
            for fd, _ in poller.poll(100):
                if fd in waiting:
                    poller.unregister(fd)
                    del waiting[fd]
        if waiting:
            self.ledger.note("%s: connections not established within 2 s" % kind, len(waiting))
        for s, b, _ in socks:
            try:
                if b == "garbage":
                    s.send(bytes(rng.randrange(256) for _ in range(rng.randint(1, 600))))
                elif b == "half_open":
                    s.send(b"\x00\x00\x00\x09\x01" if kind == "flood_pilot" else b"GET / HTTP/1.1\r\n")
                    s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        log("fault: %s with %d connections from %d address(es) (%s) for %d s" % (
            kind, len(socks), len(sources), dict(behaviours), p["seconds"]))
        peak = before
        end = now() + p["seconds"]
        slow_bytes = b"POST /v1/servables/alice/double/run HTTP/1.1\r\nHost: x\r\n" if kind == "flood_http" else b"\x00\x00\x10\x00" + b"\x01" * 64
        k = 0
        while now() < end and not self.end.is_set():
            for s, b, _ in socks:
                if b == "slow":
                    try:
                        s.send(slow_bytes[k % len(slow_bytes):k % len(slow_bytes) + 1])
                    except OSError:
                        pass
            k += 1
            peak = max(peak, (self.service.sample() or (0, 0, 0))[1])
            time.sleep(1)
        return peak

    def fault_flood_http(self, rng, p):
        self.flood("flood_http", self.service.http_port, p)

    def fault_flood_pilot(self, rng, p):
        self.flood("flood_pilot", self.service.pilot_port, p)

    # How each fault's parameters are drawn, and about how long it keeps its lane busy.
    FAULT_PLANS = {
        "kill_worker": (lambda r: {}, lambda p: 1),
        "cancel_pilot": (lambda r: {}, lambda p: 1),
        "kill_dlhubd": (lambda r: {"down": round(r.uniform(0, 3), 1)}, lambda p: p["down"] + 4),
        "term_dlhubd": (lambda r: {"down": round(r.uniform(0, 3), 1)}, lambda p: p["down"] + 10),
        "stop_slurmctld": (lambda r: {"down": r.randint(10, 30)}, lambda p: 2),
        "flood_http": (lambda r: {"count": r.choice([300, 800, 2000]), "seconds": r.randint(5, 25), "seed": r.randrange(2**32),
                                  "sources": r.choice([1, 1, 16]),
                                  "behaviours": r.choice([["idle"], ["idle", "slow", "garbage", "half_open"], ["slow", "garbage"]])},
                       lambda p: p["seconds"] + 5),
        "flood_pilot": (lambda r: {"count": r.choice([150, 500, 1500]), "seconds": r.randint(5, 20), "seed": r.randrange(2**32),
                                   "sources": r.choice([1, 1, 16]),
                                   "behaviours": r.choice([["idle"], ["idle", "slow", "garbage", "half_open"], ["slow", "garbage"]])},
                        lambda p: p["seconds"] + 5),
    }
    # Two lanes of faults run side by side, so that a short run sees every kind and faults
    # overlap as they would: what is done to processes, and what is done to their surroundings.
    LANES = {"processes": ["kill_worker", "cancel_pilot", "kill_dlhubd", "term_dlhubd"],
             "surroundings": ["stop_slurmctld", "flood_http", "flood_pilot"]}

    def schedule(self):
        """The faults from the seed, as (at, kind, parameters, lane) in order of time: in each
        lane every enabled kind once (shuffled), then random ones, spaced so that each has ended
        before traffic stops (a flood or a slurmctld pause is cut to fit)."""
        warmup = min(15.0, self.a.seconds * 0.15)
        end = self.a.seconds - min(10.0, self.a.seconds * 0.1)
        plan = []
        for lane, lane_kinds in self.LANES.items():
            kinds = [k for k in lane_kinds if k in self.a.faults]
            if not kinds:
                continue
            rng = random.Random("%d/faults/%s" % (self.seed, lane))
            order = kinds[:]
            rng.shuffle(order)
            t = warmup + (rng.uniform(0, 5) if lane == "surroundings" else 0)
            slurmctld_back = 0.0
            while t < end - 3:
                kind = order.pop(0) if order else rng.choice(kinds)
                if kind == "stop_slurmctld" and t < slurmctld_back:
                    if len(kinds) == 1:
                        t = slurmctld_back
                        continue
                    kind = rng.choice([k for k in kinds if k != "stop_slurmctld"])
                params = self.FAULT_PLANS[kind][0](rng)
                room = int(end - t)
                if kind == "stop_slurmctld":
                    params["down"] = max(5, min(params["down"], room))
                    slurmctld_back = t + params["down"] + 5
                elif kind.startswith("flood_"):
                    params["seconds"] = max(5, min(params["seconds"], room - 5))
                plan.append((round(t, 1), kind, params, lane))
                t += self.FAULT_PLANS[kind][1](params) + rng.uniform(2, 8)
        return sorted(plan, key=lambda f: f[0])

    def injector(self, plan, start):
        """One lane of faults, each at its time."""
        for at, kind, params, lane in plan:
            while now() - start < at and not self.traffic_stop.is_set():
                time.sleep(0.1)
            if self.traffic_stop.is_set():
                self.ledger.note("faults not reached before traffic stopped")
                continue
            try:
                getattr(self, "fault_" + kind)(random.Random("%s/%s/%s" % (self.seed, at, kind)), params)
            except SetupError as e:
                self.ledger.violation(ALIVE, kind, "dlhubd did not start again: %s" % e)
            except Exception:
                self.ledger.violation(HARNESS, kind, "the soak's own fault code failed: %s" % traceback.format_exc()[-800:])

    # ------------------------------------------------ watching dlhubd and the pilots

    def monitor(self):
        """Every second: is dlhubd alive, how big is it, how many pilot jobs are there."""
        tick = 0
        while not self.end.is_set():
            self.service.check_alive()
            s = self.service.sample()
            if s:
                rss, fds, threads = s
                self.samples.append((now(), rss, fds, threads, self.service.incarnation))
                self.peaks["rss_mb"] = max(self.peaks["rss_mb"], rss)
                self.peaks["fds"] = max(self.peaks["fds"], fds)
                self.peaks["threads"] = max(self.peaks["threads"], threads)
                if rss > RSS_LIMIT_MB and not self.ledger.notes["rss over"]:
                    self.ledger.note("rss over")
                    self.ledger.violation(BOUNDED, "monitor", "dlhubd resident memory %.0f MB > %d MB" % (rss, RSS_LIMIT_MB))
                if threads > THREADS_LIMIT and not self.ledger.notes["threads over"]:
                    self.ledger.note("threads over")
                    self.ledger.violation(BOUNDED, "monitor", "dlhubd has %d threads > %d" % (threads, THREADS_LIMIT))
            if tick % 3 == 1:
                self.check_worker_descriptors()
            if tick % 2 == 0 and not self.slurmctld_down.is_set():
                jobs = self.pilot_jobs(states="PD,R,CF")
                if jobs is not None:
                    self.pilot_jobs_seen |= jobs
                    self.peaks["pilot_jobs"] = max(self.peaks["pilot_jobs"], len(jobs))
                    if len(jobs) > MAX_PILOTS + MAX_QUEUED_AHEAD:
                        self.ledger.violation(NOLEAK, "monitor", "%d pilot jobs at once (%s), more than max_pilots %d + max_queued_ahead %d" % (
                            len(jobs), sorted(jobs), MAX_PILOTS, MAX_QUEUED_AHEAD))
            tick += 1
            self.end.wait(1)

    def check_worker_descriptors(self):
        """A worker runs untrusted code: beyond its three pipes it must hold nothing of its
        pilot's. A socket (the pilot's connection to dlhubd, a runtime's internal socket) or a
        pipe the pilot also holds (another worker's stdin or stdout) is a way out of the sandbox."""
        pilots = pilot_pids(self.a.prefix)
        pilot_fds = set()
        for pid in pilots:
            pilot_fds |= {t for _, t in descriptors(pid)}
        for pid in worker_pids(self.a.prefix):
            fds = descriptors(pid)
            if not fds:
                continue
            self.worker_fds_checked += 1
            bad = [(fd, t) for fd, t in fds if fd > 2 and (t.startswith("socket:") or (t.startswith("pipe:") and t in pilot_fds))]
            bad += [(fd, t) for fd, t in fds if fd <= 2 and t.startswith("socket:")]
            if bad and pid not in self.worker_fd_breaches:
                self.worker_fd_breaches.add(pid)
                cmd = _processes().get(pid, (0, "", ""))[2]
                self.ledger.violation(SEALED, "monitor", "worker %d (%s) holds %s" % (
                    pid, cmd[-120:], ", ".join("fd %d -> %s%s" % (fd, t, " (also the pilot's)" if t in pilot_fds else "") for fd, t in bad)))

    def pilot_jobs(self, states):
        """This soak's pilot jobs in the given states (job ids), or None if Slurm did not answer."""
        try:
            p = subprocess.run(["squeue", "-h", "-n", JOB_NAME, "-u", self.a.service_user, "-t", states, "-o", "%i"],
                               capture_output=True, text=True, timeout=15)
        except subprocess.TimeoutExpired:
            return None
        if p.returncode != 0:
            return None
        return {int(j) for j in p.stdout.split() if j.isdigit()} - self.preexisting_jobs

    # ------------------------------------------------ set-up

    def publish_all(self):
        for name, s in SERVABLES.items():
            r = self.users[s["owner"]].call("POST", "/v1/servables", servable_archive(name, "v1"), timeout=120,
                                            content_type="application/x-tar")
            if r.status != 201:
                raise SetupError("publishing %s/%s: HTTP %d %s" % (s["owner"], name, r.status, r.raw[:400]))
            self.published[name] = (s["owner"], [r.json["version"]])

    def warm_up(self):
        """The first answer waits for the first pilot job: paid once, before the clock starts."""
        r = self.users["alice"].call("POST", "/v1/servables/alice/double/run?wait=120", {"input": 21}, timeout=180)
        if r.status != 200 or (r.json or {}).get("output") != 42:
            raise SetupError("warm-up request: HTTP %d %s" % (r.status, r.raw[:300]))

    # ------------------------------------------------ invariants, at the end

    def check_every_accepted_request_answered_once(self):
        """Every task id handed out ends (finished) within straggler_seconds after traffic stops,
        and its answer does not change when asked again."""
        deadline = now() + self.straggler_seconds
        while self.tracker.pending() and now() < deadline:
            time.sleep(1)
        for task_id, t in self.tracker.pending():
            self.ledger.violation(ANSWERED, t["kind"], "task %s of %s (%s, %d inputs) still %s %d s after the end of traffic and faults" % (
                task_id, t["user"], t["servable"], len(t["inputs"]), t["last_status"], self.straggler_seconds))
        with self.tracker.lock:
            done = [(i, t) for i, t in self.tracker.tasks.items() if t["doc"] and t["doc"].get("status") in FINISHED]
        # An answer given within its wait is not kept (docs/requests.md); one kept unfinished
        # would run, and be answered, a second time.
        rng = random.Random(self.seed)
        sample = rng.sample(self.answered_ids, min(300, len(self.answered_ids)))
        for user, kind, task_id in sample:
            if not task_id:
                self.ledger.violation(ANSWERED, kind, "a 200 answer without an id")
                continue
            try:
                r = self.users[user].call("GET", "/v1/tasks/" + task_id, timeout=30)
            except ConnectionFailed:
                continue
            if r.status == 202:
                self.ledger.violation(ANSWERED, kind, "task %s was answered (200) but is stored unfinished (%s): it would run again" % (
                    task_id, (r.json or {}).get("status")))
            elif r.status == 200:
                self.ledger.note("answered within the wait and kept finished in the store")
        changed = 0
        for task_id, t in done:
            try:
                r = self.users[t["user"]].call("GET", "/v1/tasks/" + task_id, timeout=30)
            except ConnectionFailed as e:
                self.ledger.violation(ANSWERED, "end", "asking again for %s: %s" % (task_id, e))
                continue
            keys = ("status", "output", "outputs", "error", "errors", "items")
            if r.status != 200 or any(r.json.get(k) != t["doc"].get(k) for k in keys):
                changed += 1
                if changed <= 5:
                    self.ledger.violation(ANSWERED, "end", "task %s answered %s first, now HTTP %d %s" % (
                        task_id, short(t["doc"]), r.status, short(r.json) if r.json else r.raw[:200]))

    def check_registry_and_task_store_agree(self):
        """Every published version is listed and describable after the last restart; every
        user's stored tasks are finished, and include every task id the soak was given."""
        for name, (owner, versions) in self.published.items():
            u = self.users[owner]
            r = u.call("GET", "/v1/servables?owner=%s&limit=10000" % owner)
            listed = {s.get("name") for s in (r.json or {}).get("servables", [])} if r.status == 200 else set()
            if name not in listed:
                self.ledger.violation(AGREE, "end", "%s/%s is not listed for its owner (HTTP %d)" % (owner, name, r.status))
            if len(set(versions)) != len(versions):
                self.ledger.violation(AGREE, "end", "%s/%s: a version number was handed out twice: %s" % (owner, name, versions))
            for v in versions:
                d = u.call("GET", "/v1/servables/%s/%s@%d" % (owner, name, v))
                if d.status != 200:
                    self.ledger.violation(AGREE, "end", "%s/%s@%d was published (201) but describe says HTTP %d %s" % (
                        owner, name, v, d.status, d.raw[:200]))
        mine = collections.defaultdict(set)
        with self.tracker.lock:
            for task_id, t in self.tracker.tasks.items():
                mine[t["user"]].add(task_id)
        for login, u in self.users.items():
            r = u.call("GET", "/v1/tasks?limit=1000")
            if r.status != 200:
                self.ledger.violation(AGREE, "end", "GET /v1/tasks as %s: HTTP %d %s" % (login, r.status, r.raw[:200]))
                continue
            tasks = r.json.get("tasks", [])
            unfinished = [t for t in tasks if t.get("status") not in FINISHED]
            for t in unfinished[:5]:
                self.ledger.violation(AGREE, "end", "%s's stored task %s (%s) is %s after the soak" % (
                    login, t.get("id"), t.get("servable"), t.get("status")))
            if len(unfinished) > 5:
                self.ledger.violation(AGREE, "end", "... and %d more unfinished tasks of %s" % (len(unfinished) - 5, login))
            if len(tasks) < 1000:
                missing = mine[login] - {t.get("id") for t in tasks}
                if missing:
                    self.ledger.violation(AGREE, "end", "%d task ids handed to %s are not in GET /v1/tasks: %s" % (
                        len(missing), login, sorted(missing)[:5]))
            self.ledger.note("stored tasks listed for %s" % login, len(tasks))

    def check_no_pilot_job_leaked(self):
        """A graceful stop with pilots_on_stop=cancel leaves no pilot job, and no pilot or worker process."""
        took = self.service.stop(signal.SIGTERM, "no_pilot_job_leaked")
        log("final graceful stop took %.1f s" % (took or 0))
        deadline = now() + 30
        jobs = None
        while now() < deadline:
            jobs = self.pilot_jobs(states="PD,R,CF,CG,S")
            if jobs == set():
                break
            time.sleep(1)
        self.pilot_jobs_left = jobs
        if jobs:
            p = subprocess.run(["squeue", "-n", JOB_NAME, "-u", self.a.service_user], capture_output=True, text=True)
            self.ledger.violation(NOLEAK, "end", "pilot jobs left 30 s after a graceful stop with pilots_on_stop=cancel:\n%s" % indent(p.stdout))
        while now() < deadline + 15 and (pilot_pids(self.a.prefix) or worker_pids(self.a.prefix)):
            time.sleep(1)
        left = pilot_pids(self.a.prefix) | worker_pids(self.a.prefix)
        if left:
            self.ledger.violation(NOLEAK, "end", "pilot or worker processes left after every pilot job ended: %s" % sorted(left))

    def pilot_jobs_submitted(self):
        """Every pilot job this soak's dlhubd submitted (its log says so), and any the monitor saw."""
        ids = set(self.pilot_jobs_seen)
        try:
            with open(self.service.log_path, errors="replace") as f:
                for line in f:
                    if "pilot job submitted" in line:
                        m = re.search(r"slurm\.job_id=(\d+)", line)
                        if m:
                            ids.add(int(m.group(1)))
        except OSError:
            pass
        return ids - self.preexisting_jobs

    def check_resources_bounded(self):
        # The per-sample bounds are checked as samples come (monitor) and after each flood (flood).
        largest = max(self.flood_sizes or [0])
        if self.peaks["fds"] > 3 * largest + 1000:
            self.ledger.violation(BOUNDED, "monitor", "dlhubd peaked at %d descriptors; the largest flood was %d connections" % (
                self.peaks["fds"], largest))

    # ------------------------------------------------ the whole run

    def run(self):
        a = self.a
        log("seed %d, %d s, traffic: %s; faults: %s" % (self.seed, a.seconds, ",".join(a.traffic), ",".join(a.faults) or "none"))
        os.makedirs(self.workdir_users, exist_ok=True)
        os.chmod(self.workdir_users, 0o755)
        for u in USERS:
            d = os.path.join(self.workdir_users, u)
            os.makedirs(d, exist_ok=True)
            subprocess.run(["chown", u + ":", d], check=True)
        self.preexisting_jobs = self.pilot_jobs(states="PD,R,CF,CG,S") or set()
        raise_fd_limit()
        self.service.write_config()
        t_setup = now()
        self.service.start()
        self.publish_all()
        self.warm_up()
        setup_seconds = now() - t_setup
        log("set-up: dlhubd on %s (pilots on port %d), %d servables published, first answer after %.1f s" % (
            self.service.url, self.service.pilot_port, len(self.published), setup_seconds))
        monitor = threading.Thread(target=self.monitor, daemon=True)
        monitor.start()
        time.sleep(2)
        s = self.service.sample()
        self.baseline_fds = s[1] if s else None
        poll_stop = threading.Event()
        poller = threading.Thread(target=self.tracker.run, args=(poll_stop,), daemon=True)
        poller.start()
        threading.Thread(target=self.node_keeper, daemon=True).start()

        plan = self.schedule()
        log("fault schedule: " + ", ".join("%s@%.0fs" % (k, t) for t, k, _, _ in plan))
        start = now()
        threads = []
        for i, u in enumerate(USERS * 2):
            rng = random.Random("%d/user/%d" % (self.seed, i))
            threads.append(threading.Thread(target=self.user_loop, args=(u, rng), daemon=True, name="%s-%d" % (u, i)))
        injectors = [threading.Thread(target=self.injector, args=([f for f in plan if f[3] == lane], start), daemon=True, name=lane)
                     for lane in self.LANES]
        for t in threads + injectors:
            t.start()
        while now() - start < a.seconds:
            time.sleep(0.5)
        self.traffic_stop.set()
        traffic_seconds = now() - start
        log("traffic stopped; waiting for the users' last requests and the injector")
        for t in injectors:
            t.join(max(1, 120 - (now() - start - a.seconds)))
        for t in threads:
            t.join(max(1, 400 - (now() - start - a.seconds)))
        if self.slurmctld_thread:
            self.slurmctld_thread.join(60)
        self.service.check_alive()

        log("waiting up to %d s for accepted tasks to finish" % self.straggler_seconds)
        self.check_every_accepted_request_answered_once()
        poll_stop.set()
        poller.join(60)
        self.check_registry_and_task_store_agree()
        self.service.check_alive()
        self.end.set()
        monitor.join(10)
        self.check_resources_bounded()
        self.check_no_pilot_job_leaked()
        self.classify_connection_failures()
        return self.report(traffic_seconds, setup_seconds, plan, start)

    # ------------------------------------------------ the report

    def resources_over_time(self, traffic_start, rows=10):
        """dlhubd's samples in about `rows` spans of time (from the start of traffic): the largest
        RSS, descriptors and threads in each, and which incarnations ran."""
        if not self.samples:
            return "(no samples of dlhubd)\n"
        first, last = self.samples[0][0], self.samples[-1][0]
        span = max(10, int(round((last - first) / rows / 10.0)) * 10)
        buckets = collections.OrderedDict()
        for t, rss, fds, threads, inc in self.samples:
            b = int((t - first) // span)
            r = buckets.setdefault(b, [0.0, 0, 0, set(), None, None])
            r[0], r[1], r[2] = max(r[0], rss), max(r[1], fds), max(r[2], threads)
            r[3].add(inc)
            r[4] = rss if r[4] is None else r[4]
            r[5] = rss
        out = ["dlhubd over time (every %d s from the first sample; t from the start of traffic; max of each span):" % span, "",
               "| t (s) | incarnation | RSS MB | fds | threads |", "|---:|---|---:|---:|---:|"]
        for b, (rss, fds, threads, incs, _, _) in buckets.items():
            t0 = first + b * span - traffic_start
            out.append("| %d..%d | %s | %.0f | %d | %d |" % (t0, t0 + span, ",".join("#%d" % i for i in sorted(incs)), rss, fds, threads))
        by_inc = collections.OrderedDict()
        for t, rss, fds, threads, inc in self.samples:
            by_inc.setdefault(inc, []).append((rss, fds))
        out.append("")
        out.append("RSS MB / fds at the first and last sample of each incarnation: " + "; ".join(
            "#%d %.0f/%d -> %.0f/%d" % (inc, v[0][0], v[0][1], v[-1][0], v[-1][1]) for inc, v in by_inc.items()))
        return "\n".join(out) + "\n"

    def report(self, traffic_seconds, setup_seconds, plan, traffic_start):
        led = self.ledger
        out = led.outcomes
        lines = []
        add = lines.append
        add("# dlhubd chaos soak")
        add("")
        add("- seed %d, traffic %.0f s, set-up %.1f s, total %.0f s; %s; commit %s; %s; %d cores" % (
            self.seed, traffic_seconds, setup_seconds, now() - T0, self.a.build, self.a.commit,
            datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), os.cpu_count() or 0))
        add("- traffic kinds: %s; fault kinds: %s" % (", ".join(self.a.traffic) or "none", ", ".join(self.a.faults) or "none"))
        add("- users: %s, two client threads each; one pool of at most %d pilots; replay: `%s`" % (
            ", ".join(USERS), MAX_PILOTS, replay_command(self.a)))
        add("")

        # -------- the figures
        sent = sum(c["sent"] for c in out.values())
        accepted = {k: c["answered (200)"] + c["accepted (202)"] + c["published (201)"] for k, c in out.items()}
        terminal = {k: c["answered (200)"] + c["task finished"] + c["published (201)"] for k, c in out.items()}
        tasks = len(self.tracker.tasks)
        finished = sum(1 for t in self.tracker.tasks.values() if t["doc"] and t["doc"].get("status") in FINISHED)
        no_answer_kill = sum(c["no answer: dlhubd was being killed (allowed)"] for c in out.values())
        faults = sum(self.timeline.counts[k] for k in self.FAULT_PLANS)
        deaths = len(self.service.unexpected_deaths)
        restarts = self.service.incarnation - 1
        submitted = self.pilot_jobs_submitted()
        left = self.pilot_jobs_left
        add("## Figures")
        add("")
        add("| | |")
        add("|---|---:|")
        add("| requests sent | %d |" % sent)
        add("| accepted (a 200, a task id or a 201) | %d |" % sum(accepted.values()))
        add("| terminal answers (a 200, a finished task, a 201) | %d |" % sum(terminal.values()))
        add("| task ids handed out / finished | %d / %d |" % (tasks, finished))
        add("| bad requests refused with a 4xx | %d |" % sum(c["refused as it should (4xx)"] for c in out.values()))
        add("| inputs that failed as they should (crash, hang, broken) / cancelled / excused (worker killed) / excused (3 pilots lost) | %d / %d / %d / %d |" % (
            sum(c["errors as expected"] for c in out.values()), sum(c["cancelled items"] for c in out.values()),
            sum(c["errors excused: a worker was killed"] for c in out.values()),
            sum(c["errors excused: 3 of its pilots were lost"] for c in out.values())))
        every_end = sorted((sec, kind, what) for kind, ends in self.ends.items() for sec, what in ends)
        if every_end:
            sec, kind, what = every_end[-1]
            add("| time for a request to end (sent to its 200, finished task or bulk output): median / 99th pct / max | %.1f / %.1f / %.1f s (max: %s, %s) |" % (
                every_end[len(every_end) // 2][0], every_end[min(len(every_end) - 1, int(len(every_end) * 0.99))][0], sec, kind, what))
        bulk = out.get("bulk", collections.Counter())
        add("| bulk runs (`dlhub run --inputs`) completed / sent | %d / %d |" % (bulk["completed"], bulk["sent"]))
        add("| no answer while dlhubd was being killed (allowed) | %d |" % no_answer_kill)
        add("| faults injected | %d |" % faults)
        add("| dlhubd restarts (by the injector / after dying by itself) | %d (%d / %d) |" % (restarts, restarts - deaths, deaths))
        add("| peak resident memory | %.0f MB |" % self.peaks["rss_mb"])
        add("| peak open descriptors | %d |" % self.peaks["fds"])
        add("| peak threads | %d |" % self.peaks["threads"])
        add("| pilot jobs started / at most at once / left after the final stop | %d / %d / %s |" % (
            len(submitted), self.peaks["pilot_jobs"], "?" if left is None else len(left)))
        add("| worker processes whose descriptors were checked | %d |" % self.worker_fds_checked)
        add("")

        # -------- traffic by kind
        add("## Traffic")
        add("")
        seen = {o for c in out.values() for o in c if o != "sent"}
        columns = [(o, short_name) for o, short_name in OUTCOME_COLUMNS if o in seen]
        columns += [(o, o) for o in sorted(seen - {o for o, _ in OUTCOME_COLUMNS})]
        wrong = collections.Counter(kind for _, _, kind, _ in led.violations)
        add("| kind | sent | inputs | accepted | terminal | " + " | ".join(n for _, n in columns) + " | slowest end (s) | violations |")
        add("|---|---:|---:|---:|---:|" + "---:|" * (len(columns) + 2))
        for kind in [k for k in self.TRAFFIC_WEIGHTS if k in out]:
            c = out[kind]
            slowest = max((sec for sec, _ in self.ends.get(kind, [])), default=None)
            add("| %s | %d | %d | %s | %s | %s | %s | %s |" % (
                kind, c["sent"], led.items[kind], accepted[kind] or "", terminal[kind] or "",
                " | ".join(str(c[o]) if c[o] else "" for o, _ in columns), "" if slowest is None else "%.1f" % slowest, wrong[kind] or ""))
        add("")
        add("(accepted: a 200, a task id (202) or a publication (201); terminal: a 200, a task polled to its end or a 201;"
            " tasks done: task ids that finished; outputs ok / errors ok: inputs answered as expected; 4xx ok: bad requests"
            " refused; no answer (kill): the connection failed while the injector was killing dlhubd, allowed; excused: an"
            " input failed because its worker was killed)")
        add("")

        # -------- faults
        add("## Faults")
        add("")
        planned = collections.Counter(k for _, k, _, _ in plan)
        add("| kind | planned | injected |")
        add("|---|---:|---:|")
        for kind in self.FAULT_PLANS:
            if kind in self.a.faults:
                add("| %s | %d | %d |" % (kind, planned[kind], self.timeline.counts[kind]))
        if deaths:
            add("| (dlhubd died by itself) | | %d |" % deaths)
        add("")
        add("schedule: " + (", ".join("%s@%.0fs" % (k, t) for t, k, _, _ in plan) or "none"))
        if self.service.graceful_stops:
            add("")
            add("graceful stops took: " + ", ".join("%.1f s" % x for x in self.service.graceful_stops))
        add("")

        # -------- bounds
        add("## dlhubd's resources")
        add("")
        add("| | peak | bound |")
        add("|---|---:|---|")
        add("| resident memory (MB) | %.0f | %d |" % (self.peaks["rss_mb"], RSS_LIMIT_MB))
        add("| open descriptors | %d | back to within %d of the count before each flood %d s after it (baseline %s; largest flood %d) |" % (
            self.peaks["fds"], FD_SLACK_AFTER_FLOOD, FD_SETTLE_SECONDS, self.baseline_fds, max(self.flood_sizes or [0])))
        add("| threads | %d | %d |" % (self.peaks["threads"], THREADS_LIMIT))
        add("| pilot jobs at once | %d | %d (max_pilots + max_queued_ahead) |" % (self.peaks["pilot_jobs"], MAX_PILOTS + MAX_QUEUED_AHEAD))
        add("")
        add(self.resources_over_time(traffic_start))
        if led.notes:
            add("notes: " + "; ".join("%s%s" % (k, "" if v == 1 else " (%d)" % v) for k, v in sorted(led.notes.items()) if "over" not in k))
            add("")

        # -------- invariants
        add("## Invariants")
        add("")
        by = collections.Counter(inv for _, inv, _, _ in led.violations)
        add("| invariant | result | violations |")
        add("|---|---|---:|")
        for inv in INVARIANTS:
            add("| %s | %s | %s |" % (inv, "FAIL" if by[inv] else "PASS", by[inv] or ""))
        add("")
        if led.violations:
            add("## Violations (%d)" % len(led.violations))
            add("")
            shown = collections.Counter()
            for at, inv, kind, message in led.violations:
                # Alike once ids and numbers are set aside: the first three of each sort are shown.
                key = (kind, re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|-?\d+(\.\d+)?|\b(alice|bob|carol)\b", "#", message)[:60])
                shown[key] += 1
                if shown[key] <= 3:
                    add("- %s [%s] %s" % (at, kind, message.replace("\n", "\n  ")))
            repeats = sum(v - 3 for v in shown.values() if v > 3)
            if repeats:
                add("- ... and %d more like the ones above" % repeats)
            add("")
        for at, status, tail in self.service.unexpected_deaths:
            add("dlhubd died at %s with status %s; the end of its log:" % (at, status))
            add("```")
            add(tail)
            add("```")
        ok = not led.violations
        add("soak: %s (seed %d, %d violations: %s)" % ("PASS" if ok else "FAIL", self.seed, len(led.violations),
                                                      ", ".join("%s %d" % (inv, by[inv]) for inv in INVARIANTS if by[inv]) or "none"))
        if not ok:
            add("soak: FAILED with seed %d; replay: %s" % (self.seed, replay_command(self.a)))
        text = "\n".join(lines)
        print("\n" + text, flush=True)
        if self.a.report:
            os.makedirs(self.a.results, exist_ok=True)
            path = os.path.join(self.a.results, "%s-%s-soak.md" % (datetime.date.today().isoformat(), self.a.commit))
            with open(path, "w") as f:
                f.write(text + "\n")
            print("report: " + path)
        return 0 if ok else 1


# How the traffic table names each outcome, in this order.
OUTCOME_COLUMNS = [
    ("answered (200)", "200"), ("accepted (202)", "202"), ("task finished", "tasks done"), ("outputs correct", "outputs ok"),
    ("errors as expected", "errors ok"), ("cancelled items", "cancelled"), ("cancel accepted (200)", "cancel 200"),
    ("cancel: already finished (409)", "cancel 409"), ("refused as it should (4xx)", "4xx ok"), ("published (201)", "201"),
    ("completed", "bulk done"), ("resumed after dlhubd was killed", "bulk resumed"), ("refused: over quota (429)", "429"),
    ("no answer: dlhubd was being killed (allowed)", "no answer (kill)"), ("no answer: dlhubd had crashed (see its violation)", "no answer (crash)"),
    ("errors excused: a worker was killed", "excused"), ("errors excused: 3 of its pilots were lost", "excused (3 pilots lost)"),
]


def short(doc, n=300):
    text = json.dumps(doc) if not isinstance(doc, (str, bytes)) else str(doc)
    return text[:n] + ("..." if len(text) > n else "")


# ================================================================ processes of this soak only

def peer_still_open(s):
    """Whether the far side has not closed this (non-blocking) socket; reads what it sent."""
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return False
    except BlockingIOError:
        return True
    except OSError:
        return False


def _proc_net_address(ip, port):
    """How /proc/net/tcp writes an IPv4 address and port."""
    return "%s:%04X" % (socket.inet_aton(ip)[::-1].hex().upper(), port)


def server_side_open(port, client_addresses):
    """Of the connections from `client_addresses` to 127.0.0.1:`port`, how many the listening
    side still has open (ESTABLISHED or CLOSE_WAIT): (accepted by the process, a socket with an
    inode; waiting in the listener's accept queue, inode 0)."""
    local = _proc_net_address("127.0.0.1", port)
    wanted = {_proc_net_address(ip, p) for ip, p in client_addresses}
    held = queued = 0
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if len(parts) > 9 and parts[1] == local and parts[2] in wanted and parts[3] in ("01", "08"):
                    if parts[9] == "0":
                        queued += 1
                    else:
                        held += 1
    except OSError:
        pass
    return held, queued


def descriptors(pid):
    """(fd, target) for each open descriptor of `pid` (empty if it is gone)."""
    d = "/proc/%d/fd" % pid
    out = []
    try:
        names = os.listdir(d)
    except OSError:
        return out
    for name in names:
        try:
            out.append((int(name), os.readlink(os.path.join(d, name))))
        except (OSError, ValueError):
            continue
    return out


def _processes():
    """pid -> (ppid, exe, cmdline) for every process, read from /proc."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            try:
                exe = os.readlink("/proc/%s/exe" % d)
            except OSError:
                exe = ""
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            out[int(d)] = (ppid, exe, cmd)
        except (OSError, IndexError, ValueError):
            continue
    return out


def pilot_pids(prefix):
    """The pilots this soak's dlhubd started: their executable is the one installed under its prefix."""
    exe = os.path.join(prefix, "bin", "dlhub-pilot")
    return {pid for pid, (_, e, _) in _processes().items() if e == exe}


def worker_pids(prefix):
    """Python workers below this soak's pilots (inside their bubblewrap sandboxes)."""
    procs = _processes()
    exe = os.path.join(prefix, "bin", "dlhub-pilot")
    children = collections.defaultdict(list)
    for pid, (ppid, _, _) in procs.items():
        children[ppid].append(pid)
    found, stack = set(), [pid for pid, (_, e, _) in procs.items() if e == exe]
    while stack:
        pid = stack.pop()
        for c in children.get(pid, []):
            stack.append(c)
            _, e, cmd = procs[c]
            if "worker.py" in cmd and "python" in os.path.basename(e):
                found.add(c)
    return found


def worker_servable(pid):
    """"owner/name" of the servable a worker serves: its sandbox (bwrap, the parent) binds the
    servable's directory <registry>/servables/OWNER/NAME/VERSION at /servable."""
    procs = _processes()
    for p in (procs.get(pid, (0,))[0], pid):
        cmd = procs.get(p, (0, "", ""))[2]
        m = re.search(r"--ro-bind \S*/servables/([^/\s]+)/([^/\s]+)/\d+ /servable", cmd)
        if m:
            return "%s/%s" % m.groups()
    return None


def process_state(pid):
    """A process's state and where its threads wait in the kernel (wchan), for a stuck one."""
    try:
        with open("/proc/%d/status" % pid) as f:
            state = next((l.split(":", 1)[1].strip() for l in f if l.startswith("State:")), "?")
        waits = collections.Counter()
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                    tstate = f.read().rsplit(")", 1)[1].split()[0]
                with open("/proc/%d/task/%s/wchan" % (pid, tid)) as f:
                    waits["%s:%s" % (tstate, f.read().strip() or "-")] += 1
            except OSError:
                continue
        return "state %s; threads (state:wchan) %s" % (state, ", ".join("%s x%d" % kv for kv in waits.most_common()))
    except OSError as e:
        return "gone (%s)" % e


def start_slurmctld(cluster_dir):
    """Starts the cluster's slurmctld (the previous one may still be writing its state on the
    way out) and waits until it answers; whether it does."""
    conf = os.path.join(cluster_dir, "etc", "slurm.conf")
    pidfile = os.path.join(cluster_dir, "run", "slurmctld.pid")
    env = dict(os.environ, SLURM_CONF=conf)
    deadline = now() + 60
    while now() < deadline:
        try:
            alive = os.path.exists("/proc/%d" % int(open(pidfile).read().strip()))
        except (OSError, ValueError):
            alive = False
        if not alive:
            subprocess.run(["/usr/sbin/slurmctld", "-f", conf], capture_output=True, env=env)
        for _ in range(25):
            p = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, env=env)
            if "UP" in p.stdout:
                return True
            time.sleep(0.2)
    return False


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ================================================================ main

TRAFFIC_KINDS = list(Soak.TRAFFIC_WEIGHTS)
FAULT_KINDS = list(Soak.FAULT_PLANS)


def select_kinds(only, skip):
    """--only restricts the group(s) it names kinds of (traffic, faults); --skip takes kinds out.
    "traffic" and "faults" name a whole group."""
    def parse(text):
        names = {n.strip() for n in (text or "").split(",") if n.strip()}
        out = set()
        for n in names:
            if n == "traffic":
                out |= set(TRAFFIC_KINDS)
            elif n == "faults":
                out |= set(FAULT_KINDS)
            elif n in TRAFFIC_KINDS or n in FAULT_KINDS:
                out.add(n)
            else:
                raise SystemExit("soak: unknown kind %r; kinds: %s" % (n, ", ".join(TRAFFIC_KINDS + FAULT_KINDS)))
        return out
    o, s = parse(only), parse(skip)
    traffic = [k for k in TRAFFIC_KINDS if (not (o & set(TRAFFIC_KINDS)) or k in o) and k not in s]
    faults = [k for k in FAULT_KINDS if (not (o & set(FAULT_KINDS)) or k in o) and k not in s]
    return traffic, faults


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, required=True, help="how long traffic and faults go on")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--only", help="comma-separated kinds to run (of the groups named)")
    p.add_argument("--skip", help="comma-separated kinds to leave out")
    p.add_argument("--list", action="store_true", help="print the traffic and fault kinds")
    p.add_argument("--report", action="store_true", help="also write the report under --results")
    p.add_argument("--workdir")
    p.add_argument("--prefix")
    p.add_argument("--service-user", default="dlhub")
    p.add_argument("--worker-python", default="/opt/dlhub-dev/python/bin/python")
    p.add_argument("--cluster-dir", default="/var/tmp/dlhub-dev-cluster")
    p.add_argument("--commit", default="?")
    p.add_argument("--build", default="debug")
    p.add_argument("--replay-options", default="", help="what benchmarks/soak adds to the replay command (--cluster-dir, --from, --release)")
    p.add_argument("--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    a = p.parse_args()
    if a.list:
        print("traffic: " + ", ".join(TRAFFIC_KINDS))
        print("faults:  " + ", ".join(FAULT_KINDS))
        return 0
    if not a.workdir or not a.prefix:
        p.error("--workdir and --prefix are required (benchmarks/soak sets them)")
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1, 10**6)
    a.traffic, a.faults = select_kinds(a.only, a.skip)

    # benchmarks/soak forwards Ctrl-C (and its own SIGTERM) as SIGTERM: the same clean-up as an end.
    def interrupted(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    soak = Soak(a)
    try:
        return soak.run()
    except SetupError as e:
        print("soak: set-up failed: %s" % e, file=sys.stderr)
        print("soak: FAILED with seed %d; replay: %s" % (a.seed, replay_command(a)), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("soak: interrupted (seed %d); slurmctld is started again if the soak had stopped it" % a.seed, file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)   # the clean-up itself is not interrupted
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        soak.abort()


def replay_command(a):
    command = "benchmarks/soak %d --seed %d" % (a.seconds, a.seed)
    if a.only:
        command += " --only " + a.only
    if a.skip:
        command += " --skip " + a.skip
    if a.replay_options:
        command += " " + a.replay_options
    return command


if __name__ == "__main__":
    sys.exit(main())
