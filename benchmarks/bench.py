#!/usr/bin/env python3
"""DLHub (dlhubd + pilots) against Parsl's HighThroughputExecutor, same cluster, same run, and
against LitServe, a dedicated model server, on the same machine.

Workloads: a no-op Python function and the scikit-learn iris example, both kept loaded in pilot
jobs on the same Slurm partition. DLHub is driven over HTTP by wrk (a native load generator, so
no Python client shares the cores with the service); Parsl is driven through its own Python API
(its client is its service: the DataFlowKernel runs in the submitting process). LitServe serves
the same iris model file (benchmarks/litserve_iris.py, its dynamic batching on, from a virtual
environment of its own with the workers' scikit-learn) and is driven by wrk with DLHub's bodies.

Figures, for each system and workload:
  latency p50/p99 at concurrency 1          (serial requests)
  throughput at concurrency 1, 16, 64, 256  (requests/s; DLHub: open HTTP connections; Parsl:
                                             apps outstanding)
  per-input cost at 1..10,000 inputs/request (DLHub: one request with N inputs; Parsl: one app
                                             given the N rows)
  per row, one input of 10,000 rows         (DLHub: one run with that one input; Parsl: one app
                                             given the rows; LitServe: one request; median of
                                             serial calls)
  memoized hit p50                          (DLHub: the result cache; Parsl: app memoization)
  cold start                                (empty cluster to the first result)
  CPU seconds per 1,000 requests            (service, pilot and workers; Parsl: DataFlowKernel,
                                             interchange and worker pool), and of the service
                                             alone (dlhubd; Parsl: DataFlowKernel and interchange)
  the HTTP ceiling                          (DLHub: wrk on GET /healthz and on the authenticated
                                             no-work GET /v1/whoami, same concurrencies and
                                             seconds as the throughput runs; iris throughput as a
                                             fraction of it; LitServe: GET /health)

Run through benchmarks/run, which starts the cluster and a dlhubd as the service account.
"""
import argparse
import datetime
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5], [6.3, 3.3, 6.0, 2.5]]
CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    total = 0.0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK
        except (OSError, IndexError, ValueError):
            pass
    return total


def pids_matching(pattern):
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out if int(p) != os.getpid()]


def process_group(pgid):
    """The processes of one process group (LitServe's server and the processes it started)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[2]) == pgid:
                        pids.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return pids


WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d,"mean_us":%f}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def wrk(url, connections, seconds, workdir, method="GET", body=None, headers=None):
    """Runs wrk (one thread) on one URL; returns its summary (latencies in microseconds) and rps."""
    lines = ['wrk.method = "%s"' % method]
    for name, value in (headers or {}).items():
        lines.append('wrk.headers["%s"] = "%s"' % (name, value))
    if body is not None:
        path = os.path.join(workdir, "body.json")
        with open(path, "w") as f:
            json.dump(body, f)
        lines.append('wrk.headers["Content-Type"] = "application/json"')
        lines.append('wrk.body = io.open("%s"):read("*a")' % path)
    script = os.path.join(workdir, "wrk.lua")
    with open(script, "w") as f:
        f.write("\n".join(lines) + WRK_DONE)
    run = subprocess.run(
        ["wrk", "-t1", "-c%d" % connections, "-d%ds" % max(1, round(seconds)), "--timeout", "60s", "-s", script, url],
        capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError("wrk failed (%d): %s %s" % (run.returncode, run.stdout, run.stderr))
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    summary["rps"] = summary["requests"] / (summary["duration_us"] / 1e6)
    return summary


def errors(summary):
    return summary["status_errors"] + summary["socket_errors"]


# ---------------------------------------------------------------- DLHub, driven by wrk

class DLHub:
    def __init__(self, url, workdir, seconds, dlhubd_pid):
        self.url = url
        self.workdir = workdir
        self.seconds = seconds
        self.dlhubd_pid = dlhubd_pid
        # A credential names the service it is for (the service refuses one that names none).
        service_id = json.load(urllib.request.urlopen(url + "/healthz"))["service_id"]
        cred = subprocess.run(
            ["munge", "-s", "dlhub-service:" + service_id], capture_output=True, text=True, check=True
        ).stdout.strip()
        req = urllib.request.Request(url + "/v1/auth/token", method="POST", headers={"Authorization": "Munge " + cred})
        self.token = json.load(urllib.request.urlopen(req))["token"]

    def post(self, servable, body):
        req = urllib.request.Request(
            self.url + "/v1/servables/%s/run?wait=600" % servable, data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": "Bearer " + self.token, "Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            return json.load(r)

    def wrk(self, servable, body, connections, seconds=None):
        """Runs wrk against one servable's run; returns its summary (latencies in microseconds)."""
        return wrk(self.url + "/v1/servables/%s/run?wait=60" % servable, connections, seconds or self.seconds, self.workdir,
                   "POST", body, {"Authorization": "Bearer " + self.token})

    def get(self, path, connections, authenticated):
        """Runs wrk on a GET route (the bearer token the runs carry, if authenticated)."""
        headers = {"Authorization": "Bearer " + self.token} if authenticated else {}
        return wrk(self.url + path, connections, self.seconds, self.workdir, headers=headers)

    def processes(self):
        return [self.dlhubd_pid] + pids_matching("dlhub-pilot") + pids_matching("dlhub_worker.py")


def big_rows(n):
    """The "one input of N rows" workload: one matrix of n iris rows."""
    return [ROWS[i % 4] for i in range(n)]


def rows_figure(n):
    return "iris per row, one input of %d rows (us)" % n


def run_dlhub(a, d, workloads):
    figures = {}
    t = time.perf_counter()
    first = d.post(workloads["iris"], {"input": [ROWS[0]], "cache": False})
    figures["cold start (s)"] = time.perf_counter() - t
    d.post(workloads["noop"], {"input": [ROWS[0]], "cache": False})  # loads the no-op's worker too
    predictions = [first["output"][0]] + [d.post(workloads["iris"], {"input": [r], "cache": False})["output"][0] for r in ROWS]
    big = big_rows(a.rows)
    predictions.append(d.post(workloads["iris"], {"input": big, "cache": False})["output"])
    failures = 0
    for w, servable in workloads.items():
        body = {"input": [ROWS[1]], "cache": False}
        d.wrk(servable, body, 1, seconds=1)  # warm
        lat = d.wrk(servable, body, 1)
        failures += errors(lat)
        figures["%s latency p50 (ms)" % w] = lat["p50_us"] / 1000
        figures["%s latency p99 (ms)" % w] = lat["p99_us"] / 1000
        for c in a.concurrency:
            before, service_before = cpu_seconds(d.processes()), cpu_seconds([d.dlhubd_pid])
            s = d.wrk(servable, body, c)
            used, service_used = cpu_seconds(d.processes()) - before, cpu_seconds([d.dlhubd_pid]) - service_before
            failures += errors(s)
            figures["%s throughput c=%d (req/s)" % (w, c)] = s["rps"]
            if c == 64:
                figures["%s CPU s per 1000 requests (c=64)" % w] = used / max(1, s["requests"]) * 1000
                figures["%s service-only CPU s per 1000 requests (c=64)" % w] = service_used / max(1, s["requests"]) * 1000
        for n in a.inputs:
            inputs = [[ROWS[i % 4]] for i in range(n)]
            s = d.wrk(servable, {"inputs": inputs, "cache": False}, 1)
            failures += errors(s)
            figures["%s per input, %d inputs/request (us)" % (w, n)] = s["mean_us"] / n
        if w == "iris":
            # One input holding all the rows: one item, one predict call on the worker.
            s = d.wrk(servable, {"input": big, "cache": False}, 1)
            failures += errors(s)
            figures[rows_figure(a.rows)] = s["p50_us"] / a.rows
    s = d.wrk(workloads["iris"], {"input": [ROWS[2]]}, 1)  # deterministic: answered from the cache
    failures += errors(s)
    figures["iris memoized hit p50 (ms)"] = s["p50_us"] / 1000
    figures["failed requests"] = failures
    return figures, predictions


def run_ceiling(a, d):
    """What DLHub's HTTP layer answers when there is no work: GET /healthz (no credential) and GET
    /v1/whoami (the runs' bearer token checked, no work), same wrk, concurrencies and seconds as
    the throughput runs."""
    figures, failures = {}, 0
    for c in a.concurrency:
        for path, authenticated in (("/healthz", False), ("/v1/whoami", True)):
            s = d.get(path, c, authenticated)
            failures += errors(s)
            figures["GET %s c=%d (req/s)" % (path, c)] = s["rps"]
    figures["failed requests"] = failures
    return figures


# ---------------------------------------------------------------- LitServe, driven by wrk

class LitServe:
    """benchmarks/litserve_iris.py in its own virtual environment, in a process group of its own."""

    def __init__(self, a):
        self.a = a
        self.workdir = a.workdir
        self.seconds = a.seconds
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.process = None
        self.version = subprocess.run(
            [a.litserve_python, "-c", "import litserve, sklearn; print(litserve.__version__, sklearn.__version__)"],
            capture_output=True, text=True, check=True).stdout.split()

    def start(self):
        a = self.a
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "litserve_iris.py")
        self.log = open(os.path.join(self.workdir, "litserve.log"), "w")
        self.process = subprocess.Popen(
            [a.litserve_python, script, "--model", a.model, "--port", str(self.port), "--workers", str(a.litserve_workers),
             "--api-servers", str(a.litserve_api_servers), "--max-batch-size", str(a.litserve_max_batch),
             "--batch-timeout", str(a.litserve_batch_timeout)],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        with open(os.path.join(self.workdir, "litserve.pid"), "w") as f:  # benchmarks/run's trap stops the group too
            f.write(str(self.process.pid))

    def post(self, body, timeout=60):
        req = urllib.request.Request(self.url + "/predict", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.load(r)

    def first(self, body, limit=180):
        """Waits for the first answer (the server is up and its worker has loaded the model)."""
        t0 = time.perf_counter()
        while True:
            try:
                return self.post(body)
            except (OSError, ValueError):
                if self.process.poll() is not None:
                    raise RuntimeError("LitServe exited (%s); see %s/litserve.log" % (self.process.returncode, self.workdir))
                if time.perf_counter() - t0 > limit:
                    raise RuntimeError("LitServe did not answer within %d s; see %s/litserve.log" % (limit, self.workdir))
                time.sleep(0.05)

    def wrk(self, body, connections, seconds=None):
        return wrk(self.url + "/predict", connections, seconds or self.seconds, self.workdir, "POST", body)

    def get(self, path, connections):
        return wrk(self.url + path, connections, self.seconds, self.workdir)

    def processes(self):
        return process_group(self.process.pid)

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass
        # Its workers are in the same group; whatever outlived the server goes too.
        for pid in process_group(self.process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def run_litserve(a, ls):
    """The iris workloads against LitServe, with DLHub's bodies; returns (figures, predictions, ceiling)."""
    figures, ceiling, failures = {}, {}, 0
    t = time.perf_counter()
    ls.start()
    try:
        first = ls.first({"input": [ROWS[0]], "cache": False})
        figures["cold start (s)"] = time.perf_counter() - t
        predictions = [first["output"][0]] + [ls.post({"input": [r], "cache": False})["output"][0] for r in ROWS]
        big = big_rows(a.rows)
        predictions.append(ls.post({"input": big, "cache": False})["output"])
        body = {"input": [ROWS[1]], "cache": False}
        ls.wrk(body, 1, seconds=1)  # warm
        lat = ls.wrk(body, 1)
        failures += errors(lat)
        figures["iris latency p50 (ms)"] = lat["p50_us"] / 1000
        figures["iris latency p99 (ms)"] = lat["p99_us"] / 1000
        for c in a.concurrency:
            before = cpu_seconds(ls.processes())
            s = ls.wrk(body, c)
            used = cpu_seconds(ls.processes()) - before
            failures += errors(s)
            figures["iris throughput c=%d (req/s)" % c] = s["rps"]
            if c == 64:
                figures["iris CPU s per 1000 requests (c=64)"] = used / max(1, s["requests"]) * 1000
        for n in a.inputs:
            s = ls.wrk({"inputs": [[ROWS[i % 4]] for i in range(n)], "cache": False}, 1)
            failures += errors(s)
            figures["iris per input, %d inputs/request (us)" % n] = s["mean_us"] / n
        s = ls.wrk({"input": big, "cache": False}, 1)
        failures += errors(s)
        figures[rows_figure(a.rows)] = s["p50_us"] / a.rows
        for c in a.concurrency:
            s = ls.get("/health", c)
            failures += errors(s)
            ceiling["GET /health c=%d (req/s)" % c] = s["rps"]
        figures["failed requests"] = failures
        return figures, predictions, ceiling
    finally:
        ls.stop()


# ---------------------------------------------------------------- Parsl HTEX, driven by its API

def run_parsl(a, model, workdir):
    import parsl
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.launchers import SrunLauncher
    from parsl.providers import SlurmProvider

    config = Config(
        executors=[HighThroughputExecutor(
            label="htex", address="127.0.0.1", max_workers_per_node=2, cores_per_worker=1,
            provider=SlurmProvider(
                partition=a.partition, nodes_per_block=1, init_blocks=0, min_blocks=0, max_blocks=1,
                walltime="01:00:00", launcher=SrunLauncher(), cmd_timeout=60,
                worker_init="export PATH=%s" % os.environ["PATH"]),
        )],
        run_dir=os.path.join(workdir, "parsl-runinfo"),
        strategy="simple",
        max_idletime=600,
    )
    parsl.load(config)

    @parsl.python_app
    def iris(path, rows):
        global _dlhub_bench_model  # kept loaded in the worker, as a DLHub worker keeps it
        try:
            m = _dlhub_bench_model
        except NameError:
            import joblib
            m = _dlhub_bench_model = joblib.load(path)
        return m.predict(rows).tolist()

    @parsl.python_app
    def noop(x):
        return x

    @parsl.python_app(cache=True)
    def iris_memo(path, rows):
        import joblib
        return joblib.load(path).predict(rows).tolist()

    apps = {"noop": lambda rows: noop(rows), "iris": lambda rows: iris(model, rows)}
    figures = {}
    failures = 0

    def serial(call, count):
        lat = []
        for i in range(count):
            t = time.perf_counter()
            call(i).result()
            lat.append(time.perf_counter() - t)
        return lat

    def closed_loop(call, concurrency, seconds):
        """Keeps `concurrency` apps outstanding for `seconds`; returns (completed, elapsed, errors)."""
        slots = threading.Semaphore(concurrency)
        futures = []
        t0 = time.perf_counter()
        i = 0
        while time.perf_counter() - t0 < seconds:
            slots.acquire()
            f = call(i)
            f.add_done_callback(lambda _: slots.release())
            futures.append(f)
            i += 1
        errors = sum(1 for f in futures if f.exception() is not None)
        return len(futures), time.perf_counter() - t0, errors

    interchange = lambda: pids_matching("interchange.py") + pids_matching("process_worker_pool")  # noqa: E731
    try:
        t = time.perf_counter()
        first = iris(model, [ROWS[0]]).result()
        figures["cold start (s)"] = time.perf_counter() - t
        predictions = [first[0]] + [iris(model, [r]).result()[0] for r in ROWS]
        big = big_rows(a.rows)
        predictions.append(iris(model, big).result())
        for w, app in apps.items():
            serial(lambda i: app([ROWS[1]]), 20)  # warm
            lat = sorted(serial(lambda i: app([ROWS[1]]), a.serial))
            figures["%s latency p50 (ms)" % w] = statistics.median(lat) * 1000
            figures["%s latency p99 (ms)" % w] = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
            for c in a.concurrency:
                before = cpu_seconds(interchange() + [os.getpid()])
                service_before = cpu_seconds(pids_matching("interchange.py") + [os.getpid()])
                done, elapsed, errors = closed_loop(lambda i: app([ROWS[1]]), c, a.seconds)
                used = cpu_seconds(interchange() + [os.getpid()]) - before
                service_used = cpu_seconds(pids_matching("interchange.py") + [os.getpid()]) - service_before
                failures += errors
                figures["%s throughput c=%d (req/s)" % (w, c)] = done / elapsed
                if c == 64:
                    figures["%s CPU s per 1000 requests (c=64)" % w] = used / max(1, done) * 1000
                    figures["%s service-only CPU s per 1000 requests (c=64)" % w] = service_used / max(1, done) * 1000
            for n in a.inputs:
                rows = [ROWS[i % 4] for i in range(n)]
                lat = serial(lambda i: app(rows), max(3, min(50, 20000 // n)))
                figures["%s per input, %d inputs/request (us)" % (w, n)] = statistics.mean(lat) / n * 1e6
        lat = serial(lambda i: iris(model, big), max(5, min(50, a.serial)))
        figures[rows_figure(a.rows)] = statistics.median(lat) / a.rows * 1e6
        iris_memo(model, [ROWS[2]]).result()
        lat = serial(lambda i: iris_memo(model, [ROWS[2]]), a.serial)
        figures["iris memoized hit p50 (ms)"] = statistics.median(lat) * 1000
        figures["failed requests"] = failures
        return figures, predictions
    finally:
        parsl.dfk().cleanup()


# ---------------------------------------------------------------- the table

LOWER_IS_BETTER = ("latency", "per input", "per row", "memoized", "cold start", "CPU s", "failed")


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return "%d cores (%s), %.0f GiB, %s %s" % (os.cpu_count(), cpu, mem, platform.system(), platform.release())


def advantage(name, dv, pv):
    """How many times DLHub is better than a peer on one figure (> 1: DLHub faster or cheaper)."""
    if any(k in name for k in LOWER_IS_BETTER):
        return pv / dv if dv else float("inf")
    return dv / pv if pv else float("inf")


def table(d, peers):
    """One row per DLHub figure that some peer has too; peers: [(name, figures)], figures may be None."""
    peers = [(n, f) for n, f in peers if f is not None]
    lines = ["| figure | DLHub | %s | %s |" % (" | ".join(n for n, _ in peers), " | ".join("vs %s" % n for n, _ in peers)),
             "|---|---:|%s" % ("---:|" * (2 * len(peers)))]
    for name in d:
        values = [f.get(name) for _, f in peers]
        if all(v is None for v in values):
            continue
        dv = d[name]
        if name == "failed requests":
            cells = ["%d" % dv] + ["" if v is None else "%d" % v for v in values] + [""] * len(peers)
        else:
            cells = (["%.3f" % dv] + ["" if v is None else "%.3f" % v for v in values]
                     + ["" if v is None else "%.2fx" % advantage(name, dv, v) for v in values])
        lines.append("| %s | %s |" % (name, " | ".join(cells)))
    return "\n".join(lines)


def ceiling_table(a, d, ceiling, l, lceiling):
    """Requests/s with no work behind them, and iris throughput as a fraction of the authenticated ceiling."""
    head = "| concurrency | DLHub GET /healthz | DLHub GET /v1/whoami | DLHub iris run | run / whoami |"
    rule = "|---:|---:|---:|---:|---:|"
    if l is not None:
        head += " LitServe GET /health | LitServe iris | LitServe iris / /health |"
        rule += "---:|---:|---:|"
    lines = [head, rule]
    for c in a.concurrency:
        h, w = ceiling["GET /healthz c=%d (req/s)" % c], ceiling["GET /v1/whoami c=%d (req/s)" % c]
        run = d["iris throughput c=%d (req/s)" % c]
        row = "| %d | %.0f | %.0f | %.0f | %.3f |" % (c, h, w, run, run / w if w else float("inf"))
        if l is not None:
            lh, lrun = lceiling["GET /health c=%d (req/s)" % c], l["iris throughput c=%d (req/s)" % c]
            row += " %.0f | %.0f | %.3f |" % (lh, lrun, lrun / lh if lh else float("inf"))
        lines.append(row)
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--noop", required=True, help="the no-op servable, owner/name")
    p.add_argument("--iris", required=True, help="the iris servable, owner/name")
    p.add_argument("--model", required=True, help="the iris model file, for Parsl and LitServe")
    p.add_argument("--dlhubd-pid", type=int, required=True)
    p.add_argument("--seconds", type=float, default=10, help="length of each throughput run")
    p.add_argument("--serial", type=int, default=500, help="serial Parsl calls for latency")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    p.add_argument("--inputs", type=int, nargs="+", default=[1, 10, 100, 1000, 10000])
    p.add_argument("--rows", type=int, default=10000, help="rows of the one-input-of-many-rows workload")
    p.add_argument("--partition", default="cpu")
    p.add_argument("--litserve-python", help="the LitServe environment's python; without it LitServe is skipped")
    p.add_argument("--litserve-workers", type=int, default=1, help="LitServe inference worker processes")
    p.add_argument("--litserve-api-servers", type=int, default=2,
                   help="LitServe HTTP server processes (2, one per core here: its best on 2 cores, 1.5x one at c=64)")
    p.add_argument("--litserve-max-batch", type=int, default=64, help="LitServe's max_batch_size")
    p.add_argument("--litserve-batch-timeout", type=float, default=0.001, help="LitServe's batch_timeout (s)")
    p.add_argument("--workdir", required=True)
    p.add_argument("--commit", default="?")
    p.add_argument("--out", help="write the report (Markdown) here, and its figures beside it as JSON")
    a = p.parse_args()
    # A SIGTERM (benchmarks/run interrupted) unwinds, so that LitServe and Parsl are stopped on the way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    dlhub = DLHub(a.url, a.workdir, a.seconds, a.dlhubd_pid)
    d, dp = run_dlhub(a, dlhub, {"noop": a.noop, "iris": a.iris})
    ceiling = run_ceiling(a, dlhub)
    for c in a.concurrency:
        w = ceiling["GET /v1/whoami c=%d (req/s)" % c]
        ceiling["iris run / GET /v1/whoami c=%d" % c] = d["iris throughput c=%d (req/s)" % c] / w if w else None
    l = lp = lceiling = None
    if a.litserve_python:
        ls = LitServe(a)
        l, lp, lceiling = run_litserve(a, ls)
        litserve_line = ("- LitServe %s (scikit-learn %s): API servers: %d, inference workers: %d, max_batch_size %d, "
                         "batch_timeout %g s, fast_queue (ZeroMQ); driven by wrk with DLHub's bodies"
                         % (ls.version[0], ls.version[1], a.litserve_api_servers, a.litserve_workers,
                            a.litserve_max_batch, a.litserve_batch_timeout))
    else:
        litserve_line = "- LitServe: skipped (no --litserve-python)"
        print("bench.py: LitServe skipped (no --litserve-python)", file=sys.stderr)
    q, qp = run_parsl(a, a.model, a.workdir)
    if dp != qp or (lp is not None and lp != dp):
        short = lambda p: None if p is None else p[:-1] + [p[-1][:8]]  # noqa: E731
        print("the systems disagree on the predictions: DLHub %s, Parsl %s, LitServe %s" % (short(dp), short(qp), short(lp)),
              file=sys.stderr)
        return 1
    report = "\n".join([
        "# DLHub vs Parsl HTEX on the local Slurm cluster, and LitServe on the same machine",
        "",
        "- date: %s" % datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "- commit: %s" % a.commit,
        "- machine: %s" % machine(),
        "- each throughput run %.0f s; DLHub driven by wrk (1 thread), Parsl by its Python API" % a.seconds,
        litserve_line,
        "",
        table(d, [("Parsl HTEX", q), ("LitServe", l)]),
        "",
        "vs X > 1 means DLHub is better (faster, cheaper) than X; same model file, same predictions. LitServe is "
        "a dedicated server for the one model on this machine (no Slurm job, no no-op servable, no result cache); "
        "its cold start is its process start to the first answer, DLHub's and Parsl's an empty cluster's.",
        "",
        "## The HTTP ceiling (requests/s, wrk, %.0f s each)" % a.seconds,
        "",
        ceiling_table(a, d, ceiling, l, lceiling),
        "",
        "GET /healthz takes no credential; GET /v1/whoami checks the same bearer token as the runs and does no work; "
        "run / whoami is the iris single-input throughput as a fraction of that authenticated ceiling.",
    ])
    print(report)
    if a.out:
        with open(a.out, "w") as f:
            f.write(report + "\n")
        with open(os.path.splitext(a.out)[0] + ".json", "w") as f:
            json.dump({"dlhub": d, "parsl": q, "litserve": l, "ceiling": {"dlhub": ceiling, "litserve": lceiling},
                       "litserve_config": None if l is None else {
                           "version": ls.version[0], "scikit-learn": ls.version[1], "api_servers": a.litserve_api_servers,
                           "workers": a.litserve_workers, "max_batch_size": a.litserve_max_batch,
                           "batch_timeout_s": a.litserve_batch_timeout},
                       "commit": a.commit, "machine": machine()}, f, indent=2)
    failed = [name for name, f in (("DLHub", d), ("DLHub HTTP ceiling", ceiling), ("LitServe", l))
              if f is not None and f["failed requests"]]
    if failed:
        print("bench.py: failed requests: %s" % ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
