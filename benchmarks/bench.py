#!/usr/bin/env python3
"""DLHub (dlhubd + pilots) against Parsl's HighThroughputExecutor, same cluster, same run.

Workloads: a no-op Python function and the scikit-learn iris example, both kept loaded in pilot
jobs on the same Slurm partition. DLHub is driven over HTTP by wrk (a native load generator, so
no Python client shares the cores with the service); Parsl is driven through its own Python API
(its client is its service: the DataFlowKernel runs in the submitting process).

Figures, for each system and workload:
  latency p50/p99 at concurrency 1          (serial requests)
  throughput at concurrency 1, 16, 64, 256  (requests/s; DLHub: open HTTP connections; Parsl:
                                             apps outstanding)
  per-input cost at 1..10,000 inputs/request (DLHub: one request with N inputs; Parsl: one app
                                             given the N rows)
  memoized hit p50                          (DLHub: the result cache; Parsl: app memoization)
  cold start                                (empty cluster to the first result)
  CPU seconds per 1,000 requests            (service, pilot and workers; Parsl: DataFlowKernel,
                                             interchange and worker pool), and of the service
                                             alone (dlhubd; Parsl: DataFlowKernel and interchange)

Run through benchmarks/run, which starts the cluster and a dlhubd as the service account.
"""
import argparse
import datetime
import json
import os
import platform
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
        """Runs wrk against one servable; returns its summary (latencies in microseconds)."""
        path = os.path.join(self.workdir, "body.json")
        with open(path, "w") as f:
            json.dump(body, f)
        script = os.path.join(self.workdir, "post.lua")
        with open(script, "w") as f:
            f.write("""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
wrk.body = io.open("%s"):read("*a")
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%%d,"duration_us":%%d,"status_errors":%%d,"socket_errors":%%d,"p50_us":%%d,"p99_us":%%d,"mean_us":%%f}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
""" % (self.token, path))
        url = self.url + "/v1/servables/%s/run?wait=60" % servable
        run = subprocess.run(
            ["wrk", "-t1", "-c%d" % connections, "-d%ds" % max(1, round(seconds or self.seconds)), "--timeout", "60s", "-s", script, url],
            capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError("wrk failed (%d): %s %s" % (run.returncode, run.stdout, run.stderr))
        summary = json.loads(run.stdout.strip().splitlines()[-1])
        summary["rps"] = summary["requests"] / (summary["duration_us"] / 1e6)
        return summary

    def processes(self):
        return [self.dlhubd_pid] + pids_matching("dlhub-pilot") + pids_matching("dlhub_worker.py")


def run_dlhub(a, d, workloads):
    figures = {}
    t = time.perf_counter()
    first = d.post(workloads["iris"], {"input": [ROWS[0]], "cache": False})
    figures["cold start (s)"] = time.perf_counter() - t
    d.post(workloads["noop"], {"input": [ROWS[0]], "cache": False})  # loads the no-op's worker too
    predictions = [first["output"][0]] + [d.post(workloads["iris"], {"input": [r], "cache": False})["output"][0] for r in ROWS]
    failures = 0
    for w, servable in workloads.items():
        body = {"input": [ROWS[1]], "cache": False}
        d.wrk(servable, body, 1, seconds=1)  # warm
        lat = d.wrk(servable, body, 1)
        failures += lat["status_errors"] + lat["socket_errors"]
        figures["%s latency p50 (ms)" % w] = lat["p50_us"] / 1000
        figures["%s latency p99 (ms)" % w] = lat["p99_us"] / 1000
        for c in a.concurrency:
            before, service_before = cpu_seconds(d.processes()), cpu_seconds([d.dlhubd_pid])
            s = d.wrk(servable, body, c)
            used, service_used = cpu_seconds(d.processes()) - before, cpu_seconds([d.dlhubd_pid]) - service_before
            failures += s["status_errors"] + s["socket_errors"]
            figures["%s throughput c=%d (req/s)" % (w, c)] = s["rps"]
            if c == 64:
                figures["%s CPU s per 1000 requests (c=64)" % w] = used / max(1, s["requests"]) * 1000
                figures["%s service-only CPU s per 1000 requests (c=64)" % w] = service_used / max(1, s["requests"]) * 1000
        for n in a.inputs:
            inputs = [[ROWS[i % 4]] for i in range(n)]
            s = d.wrk(servable, {"inputs": inputs, "cache": False}, 1)
            failures += s["status_errors"] + s["socket_errors"]
            figures["%s per input, %d inputs/request (us)" % (w, n)] = s["mean_us"] / n
    s = d.wrk(workloads["iris"], {"input": [ROWS[2]]}, 1)  # deterministic: answered from the cache
    failures += s["status_errors"] + s["socket_errors"]
    figures["iris memoized hit p50 (ms)"] = s["p50_us"] / 1000
    figures["failed requests"] = failures
    return figures, predictions


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
        iris_memo(model, [ROWS[2]]).result()
        lat = serial(lambda i: iris_memo(model, [ROWS[2]]), a.serial)
        figures["iris memoized hit p50 (ms)"] = statistics.median(lat) * 1000
        figures["failed requests"] = failures
        return figures, predictions
    finally:
        parsl.dfk().cleanup()


# ---------------------------------------------------------------- the table

LOWER_IS_BETTER = ("latency", "per input", "memoized", "cold start", "CPU s", "failed")


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return "%d cores (%s), %.0f GiB, %s %s" % (os.cpu_count(), cpu, mem, platform.system(), platform.release())


def table(d, q):
    lines = ["| figure | DLHub | Parsl HTEX | DLHub advantage |", "|---|---:|---:|---:|"]
    for name in d:
        dv, qv = d[name], q.get(name)
        if qv is None:
            continue
        if name == "failed requests":
            lines.append("| %s | %d | %d | |" % (name, dv, qv))
            continue
        lower = any(k in name for k in LOWER_IS_BETTER)
        ratio = (qv / dv if dv else float("inf")) if lower else (dv / qv if qv else float("inf"))
        lines.append("| %s | %.3f | %.3f | %.2fx |" % (name, dv, qv, ratio))
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--noop", required=True, help="the no-op servable, owner/name")
    p.add_argument("--iris", required=True, help="the iris servable, owner/name")
    p.add_argument("--model", required=True, help="the iris model file, for Parsl")
    p.add_argument("--dlhubd-pid", type=int, required=True)
    p.add_argument("--seconds", type=float, default=10, help="length of each throughput run")
    p.add_argument("--serial", type=int, default=500, help="serial Parsl calls for latency")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    p.add_argument("--inputs", type=int, nargs="+", default=[1, 10, 100, 1000, 10000])
    p.add_argument("--partition", default="cpu")
    p.add_argument("--workdir", required=True)
    p.add_argument("--commit", default="?")
    p.add_argument("--out", help="write the report (Markdown) here, and its figures beside it as JSON")
    a = p.parse_args()

    d, dp = run_dlhub(a, DLHub(a.url, a.workdir, a.seconds, a.dlhubd_pid), {"noop": a.noop, "iris": a.iris})
    q, qp = run_parsl(a, a.model, a.workdir)
    if dp != qp:
        print("the two systems disagree on the predictions: %s vs %s" % (dp, qp), file=sys.stderr)
        return 1
    report = "\n".join([
        "# DLHub vs Parsl HTEX on the local Slurm cluster",
        "",
        "- date: %s" % datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "- commit: %s" % a.commit,
        "- machine: %s" % machine(),
        "- each throughput run %.0f s; DLHub driven by wrk (1 thread), Parsl by its Python API" % a.seconds,
        "",
        table(d, q),
        "",
        "Advantage > 1 means DLHub is better (faster, cheaper); same models, same partition, same predictions.",
    ])
    print(report)
    if a.out:
        with open(a.out, "w") as f:
            f.write(report + "\n")
        with open(os.path.splitext(a.out)[0] + ".json", "w") as f:
            json.dump({"dlhub": d, "parsl": q, "commit": a.commit, "machine": machine()}, f, indent=2)
    return 1 if d["failed requests"] else 0


if __name__ == "__main__":
    sys.exit(main())
