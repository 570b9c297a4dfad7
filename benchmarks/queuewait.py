"""Queue-wait hiding under bursty load, and walltime rollover, on a partition with a real queue wait.

Driven by benchmarks/queue-wait, which starts dlhubd once per policy. This script sends one
scenario's load to one running service and prints a JSON summary:

  bursty:   one warm-up request (the first queue wait), idle, a burst, steady traffic, idle,
            a second burst, idle. A request "waited on the queue" when it took longer than
            --queued-after seconds (the partition's queue wait is 30 s; work in a pilot takes
            milliseconds, a burst's backlog a few seconds).
  rollover: steady traffic across pilot walltime ends (1-minute pilots, so several rollovers);
            failed requests, and p99 latency in the windows around each pilot's end against
            the p99 outside them.

Node time comes from Slurm's own record of the pool's pilot jobs (squeue --states=all start
and end times); busy time is the work the requests asked for (count x delay).
"""
import argparse
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request


class Client:
    def __init__(self, url):
        self.url = url
        # A credential names the service it is for (the service refuses one that names none).
        service_id = json.load(urllib.request.urlopen(url + "/healthz"))["service_id"]
        cred = subprocess.run(
            ["munge", "-s", "dlhub-service:" + service_id], capture_output=True, text=True, check=True
        ).stdout.strip()
        req = urllib.request.Request(url + "/v1/auth/token", method="POST", headers={"Authorization": "Munge " + cred})
        self.token = json.load(urllib.request.urlopen(req))["token"]

    def run(self, servable, x, delay):
        body = json.dumps({"input": x, "parameters": {"delay": delay}}).encode()
        req = urllib.request.Request(
            self.url + "/v1/servables/%s/run?wait=300" % servable, data=body, method="POST",
            headers={"Authorization": "Bearer " + self.token, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=330) as r:
                doc = json.load(r)
                return r.status == 200 and doc.get("output") == 2 * x, doc
        except urllib.error.HTTPError as e:
            return False, {"status": e.code, "body": e.read()[:300].decode(errors="replace")}
        except Exception as e:  # noqa: BLE001 - a failed request is counted, whatever failed
            return False, {"error": str(e)}


class Recorder:
    """Every request: when it was sent, how long it took, whether it was right, and its phase."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rows = []

    def add(self, phase, sent, seconds, ok, doc):
        with self.lock:
            self.rows.append({"phase": phase, "sent": sent, "seconds": seconds, "ok": ok,
                              "error": None if ok else json.dumps(doc)[:300]})


def one(client, rec, phase, servable, x, delay):
    sent = time.time()
    ok, doc = client.run(servable, x, delay)
    rec.add(phase, sent, time.time() - sent, ok, doc)


def burst(client, rec, phase, servable, n, delay, rate):
    """n requests arriving at `rate` a second whatever the answers (many users at once: an open
    loop, so a burst that meets no pilot has all its requests waiting, not just a client's few)."""
    steady(client, rec, phase, servable, rate, n / rate, delay)


def steady(client, rec, phase, servable, rate, seconds, delay):
    """`rate` requests a second for `seconds`, each in its own thread (an open loop)."""
    threads = []
    start = time.time()
    i = 0
    while time.time() - start < seconds:
        t = threading.Thread(target=one, args=(client, rec, phase, servable, i, delay))
        t.start()
        threads.append(t)
        i += 1
        time.sleep(max(0.0, start + i / rate - time.time()))
    for t in threads:
        t.join()


def slurm_jobs(name):
    out = subprocess.run(["squeue", "-h", "--states=all", "-n", name, "-o", "%i|%T|%S|%e|%V"],
                         capture_output=True, text=True, check=True).stdout
    jobs = []
    for line in out.splitlines():
        f = line.split("|")
        def ts(s):
            try:
                return time.mktime(time.strptime(s, "%Y-%m-%dT%H:%M:%S"))
            except ValueError:
                return None
        jobs.append({"id": int(f[0]), "state": f[1], "start": ts(f[2]), "end": ts(f[3]), "submit": ts(f[4])})
    return jobs


def node_seconds(jobs, t0, t1):
    """Seconds pilot jobs held a node between t0 and t1."""
    total = 0.0
    for j in jobs:
        if j["start"] is None or j["state"] == "PENDING":
            continue
        end = j["end"] if j["end"] and j["state"] not in ("RUNNING",) else t1
        total += max(0.0, min(end, t1) - max(j["start"], t0))
    return total


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def bursty(a, client, rec):
    # Warm-up: the first request pays the first queue wait (whatever the policy).
    one(client, rec, "warm-up", a.servable, 1, a.delay)
    marks = {"after_warmup": time.time()}
    time.sleep(a.idle)
    burst(client, rec, "burst-1", a.servable, a.burst, a.delay, a.burst_rate)
    steady(client, rec, "steady", a.servable, a.rate, a.steady, a.delay)
    time.sleep(a.idle)
    burst(client, rec, "burst-2", a.servable, a.burst, a.delay, a.burst_rate)
    time.sleep(a.idle)
    marks["end"] = time.time()
    rows = [r for r in rec.rows if r["phase"] != "warm-up"]
    queued = [r for r in rows if r["seconds"] > a.queued_after]
    jobs = slurm_jobs(a.job_name)
    held = node_seconds(jobs, marks["after_warmup"], marks["end"])
    busy = len(rows) * a.delay
    return {
        "requests_after_warmup": len(rows),
        "failed": sum(1 for r in rows if not r["ok"]),
        "waited_on_queue": len(queued),
        "waited_on_queue_pct": 100.0 * len(queued) / max(1, len(rows)),
        "by_phase": {p: {"n": sum(1 for r in rows if r["phase"] == p),
                         "queued": sum(1 for r in queued if r["phase"] == p),
                         "p50_s": percentile([r["seconds"] for r in rows if r["phase"] == p], 50),
                         "max_s": max([r["seconds"] for r in rows if r["phase"] == p] or [0])}
                     for p in ("burst-1", "steady", "burst-2")},
        "pilot_jobs": len(jobs),
        "node_seconds": held,
        "busy_node_seconds": busy,
        "idle_node_seconds": max(0.0, held - busy),
        "window_seconds": marks["end"] - marks["after_warmup"],
        "errors": [r["error"] for r in rows if not r["ok"]][:5],
    }


def rollover(a, client, rec):
    one(client, rec, "warm-up", a.servable, 1, a.delay)
    t0 = time.time()
    steady(client, rec, "steady", a.servable, a.rate, a.steady, a.delay)
    rows = [r for r in rec.rows if r["phase"] == "steady"]
    jobs = slurm_jobs(a.job_name)
    # Rollover windows: 15 s either side of each pilot job's end within the run.
    ends = [j["end"] for j in jobs if j["end"] and j["state"] not in ("RUNNING", "PENDING") and t0 < j["end"] < time.time()]
    def near(r):
        return any(abs(r["sent"] - e) <= 15 for e in ends)
    during = [r["seconds"] for r in rows if near(r)]
    outside = [r["seconds"] for r in rows if not near(r)]
    return {
        "requests": len(rows),
        "failed": sum(1 for r in rows if not r["ok"]),
        "pilot_jobs": len(jobs),
        "rollovers": len(ends),
        "p99_steady_s": percentile(outside, 99),
        "p99_rollover_s": percentile(during, 99),
        "p50_steady_s": percentile(outside, 50),
        "p50_rollover_s": percentile(during, 50),
        "requests_in_rollover_windows": len(during),
        "errors": [r["error"] for r in rows if not r["ok"]][:5],
    }


def report(paths, out, header):
    """The Markdown table a person reads, from the JSON summaries the runs wrote."""
    r = {name: json.load(open(path)) for name, path in paths}
    od, qh, ro = r.get("on-demand"), r.get("hiding"), r.get("rollover")
    lines = [header, ""]
    if od and qh:
        def ratio(a, b):
            return "%.2f" % (a / b) if b else ("n/a" if a == 0 else "inf")
        lines += [
            "## Bursty load on a partition with a 30 s queue wait",
            "",
            "| figure | submit on demand | queue-wait hiding | hiding / on demand |",
            "|---|---|---|---|",
            "| requests after warm-up | %d | %d | |" % (od["requests_after_warmup"], qh["requests_after_warmup"]),
            "| failed | %d | %d | |" % (od["failed"], qh["failed"]),
            "| waited on Slurm's queue (> %s s) | %d (%.2f %%) | %d (%.2f %%) | %s |" % (
                QUEUED_AFTER, od["waited_on_queue"], od["waited_on_queue_pct"], qh["waited_on_queue"],
                qh["waited_on_queue_pct"], ratio(qh["waited_on_queue"], od["waited_on_queue"])),
        ]
        for phase in ("burst-1", "steady", "burst-2"):
            a, b = od["by_phase"][phase], qh["by_phase"][phase]
            lines.append("| %s: queued / n, p50, max | %d/%d, %.3f s, %.1f s | %d/%d, %.3f s, %.1f s | |" % (
                phase, a["queued"], a["n"], a["p50_s"] or 0, a["max_s"], b["queued"], b["n"], b["p50_s"] or 0, b["max_s"]))
        lines += [
            "| pilot jobs | %d | %d | |" % (od["pilot_jobs"], qh["pilot_jobs"]),
            "| node-seconds held (window %.0f s) | %.0f | %.0f | %s |" % (
                qh["window_seconds"], od["node_seconds"], qh["node_seconds"], ratio(qh["node_seconds"], od["node_seconds"])),
            "| idle node-seconds | %.0f | %.0f | %s |" % (
                od["idle_node_seconds"], qh["idle_node_seconds"], ratio(qh["idle_node_seconds"], od["idle_node_seconds"])),
            "| idle budget: min_pilots x window + max_queued_ahead x 3 x (idle timeout + 15 s) | (none configured) | %.0f | |" % (
                qh.get("budget", 0)),
            "| idle node-seconds within budget | | %s | |" % ("yes" if qh["idle_node_seconds"] <= qh.get("budget", 0) else "no"),
            "",
        ]
    if ro:
        ok = ro["failed"] == 0 and ro["p99_rollover_s"] is not None and ro["p99_steady_s"] and ro["p99_rollover_s"] <= 2 * ro["p99_steady_s"]
        lines += [
            "## Walltime rollover under steady load (1-minute pilots, 30 s queue wait)",
            "",
            "| figure | value |",
            "|---|---|",
            "| requests / failed | %d / %d |" % (ro["requests"], ro["failed"]),
            "| pilot jobs / rollovers in the run | %d / %d |" % (ro["pilot_jobs"], ro["rollovers"]),
            "| p50 / p99 outside rollovers | %.3f s / %.3f s |" % (ro["p50_steady_s"] or 0, ro["p99_steady_s"] or 0),
            "| p50 / p99 within 15 s of a pilot's end | %.3f s / %.3f s |" % (ro["p50_rollover_s"] or 0, ro["p99_rollover_s"] or 0),
            "| p99 rollover / p99 steady | %s |" % ("%.2f" % (ro["p99_rollover_s"] / ro["p99_steady_s"]) if ro["p99_steady_s"] and ro["p99_rollover_s"] else "n/a"),
            "| target (no failures, p99 within 2x) | %s |" % ("met" if ok else "missed"),
            "",
        ]
    with open(out, "w") as f:
        f.write("\n".join(lines))


QUEUED_AFTER = 10


def main():
    import sys
    if len(sys.argv) > 1 and sys.argv[1] == "report":
        # report OUT HEADER NAME=PATH...
        report([tuple(x.split("=", 1)) for x in sys.argv[4:]], sys.argv[2], sys.argv[3])
        return
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=["bursty", "rollover"])
    p.add_argument("--url", required=True)
    p.add_argument("--servable", required=True)
    p.add_argument("--job-name", required=True)
    p.add_argument("--delay", type=float, default=0.02)
    p.add_argument("--idle", type=float, default=45)
    p.add_argument("--burst", type=int, default=300)
    p.add_argument("--burst-rate", type=float, default=100, help="requests a second during a burst")
    p.add_argument("--rate", type=float, default=8)
    p.add_argument("--steady", type=float, default=60)
    p.add_argument("--queued-after", type=float, default=QUEUED_AFTER)
    p.add_argument("--min-pilots", type=int, default=0, help="the pool's min_pilots (for the idle budget)")
    p.add_argument("--queued-ahead", type=int, default=0, help="the pool's max_queued_ahead (for the idle budget)")
    p.add_argument("--idle-timeout", type=float, default=20, help="the pool's idle_timeout_seconds (for the idle budget)")
    a = p.parse_args()
    client = Client(a.url)
    rec = Recorder()
    result = bursty(a, client, rec) if a.scenario == "bursty" else rollover(a, client, rec)
    if a.scenario == "bursty":
        # What an admin signs up for: the warm minimum for the whole window, and each queued-ahead
        # pilot idling out its idle timeout (plus 15 s of ticks and draining) once per burst and
        # once for the steady phase.
        result["budget"] = a.min_pilots * result["window_seconds"] + a.queued_ahead * 3 * (a.idle_timeout + 15)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
