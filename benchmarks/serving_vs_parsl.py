#!/usr/bin/env python3
"""Inference on the local Slurm cluster: DLHub (dlhubd + pilots) against Parsl's HighThroughputExecutor.

Both serve the same scikit-learn model (examples/sklearn-iris) from pilot jobs on the same
cluster partition, with the model kept loaded between requests (Parsl caches it in a worker
global). Measured, for each:
  cold     first request with no pilot/block running (includes the Slurm job start)
  warm     median latency of sequential single requests once warm
  burst    wall time for N single-row requests issued at once (DLHub: C concurrent HTTP clients;
           Parsl: N apps submitted together), and the resulting requests per second

Run through benchmarks/run, which starts the cluster and a dlhubd built in release mode.
"""
import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5], [6.3, 3.3, 6.0, 2.5]]


def dlhub_bench(url, servable, n, concurrency, warm_count):
    cred = subprocess.run(["munge", "-n"], capture_output=True, text=True, check=True).stdout.strip()
    token = requests.post(url + "/v1/auth/token", headers={"Authorization": "Munge " + cred}).json()["token"]
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + token
    adapter = requests.adapters.HTTPAdapter(pool_connections=concurrency, pool_maxsize=concurrency)
    session.mount("http://", adapter)

    def run(row):
        r = session.post(url + "/v1/servables/%s/run?wait=600" % servable, json={"input": [row]})
        body = r.json()
        while r.status_code == 202:
            r = session.get(url + "/v1/tasks/%s?wait=10" % body["id"])
            body = r.json()
        return body["output"][0]

    t = time.perf_counter()
    first = run(ROWS[0])
    cold = time.perf_counter() - t
    lat = []
    for i in range(warm_count):
        t = time.perf_counter()
        run(ROWS[i % 4])
        lat.append(time.perf_counter() - t)
    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        outputs = list(pool.map(run, [ROWS[i % 4] for i in range(n)]))
    burst = time.perf_counter() - t
    # What a DLHub user does with many inputs: one request, `inputs`, batched onto the pilot.
    t = time.perf_counter()
    r = session.post(url + "/v1/servables/%s/run?wait=600" % servable, json={"inputs": [[ROWS[i % 4]] for i in range(n)]})
    body = r.json()
    while r.status_code == 202:
        r = session.get(url + "/v1/tasks/%s?wait=10" % body["id"])
        body = r.json()
    one_request = time.perf_counter() - t
    assert [o[0] for o in body["outputs"][:4]] == outputs[:4]
    return cold, statistics.median(lat), burst, [first] + outputs[:4], one_request


def parsl_bench(model, n, warm_count, partition, workdir):
    import parsl
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.launchers import SrunLauncher
    from parsl.providers import SlurmProvider

    config = Config(
        executors=[HighThroughputExecutor(
            label="htex", address="127.0.0.1", max_workers_per_node=2, cores_per_worker=1,
            provider=SlurmProvider(
                partition=partition, nodes_per_block=1, init_blocks=0, min_blocks=0, max_blocks=1,
                walltime="01:00:00", launcher=SrunLauncher(), cmd_timeout=60,
                worker_init="export PATH=%s" % os.environ["PATH"]),
        )],
        run_dir=os.path.join(workdir, "parsl-runinfo"),
        strategy="simple",
        max_idletime=600,
    )
    parsl.load(config)

    @parsl.python_app
    def predict(path, rows):
        global _dlhub_bench_model  # kept loaded in the worker, as a DLHub worker keeps it
        try:
            m = _dlhub_bench_model
        except NameError:
            import joblib
            m = _dlhub_bench_model = joblib.load(path)
        return m.predict(rows).tolist()

    try:
        t = time.perf_counter()
        first = predict(model, [ROWS[0]]).result()[0]
        cold = time.perf_counter() - t
        lat = []
        for i in range(warm_count):
            t = time.perf_counter()
            predict(model, [ROWS[i % 4]]).result()
            lat.append(time.perf_counter() - t)
        t = time.perf_counter()
        futures = [predict(model, [ROWS[i % 4]]) for i in range(n)]
        outputs = [f.result()[0] for f in futures]
        burst = time.perf_counter() - t
        return cold, statistics.median(lat), burst, [first] + outputs[:4], burst
    finally:
        parsl.dfk().cleanup()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--servable", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--warm", type=int, default=50)
    p.add_argument("--partition", default="cpu")
    p.add_argument("--workdir", default="/tmp/dlhub-bench")
    p.add_argument("--json", help="also write the figures here")
    a = p.parse_args()
    os.makedirs(a.workdir, exist_ok=True)

    d = dlhub_bench(a.url, a.servable, a.requests, a.concurrency, a.warm)
    q = parsl_bench(a.model, a.requests, a.warm, a.partition, a.workdir)
    if d[3] != q[3]:
        print("the two systems disagree on the predictions: %s vs %s" % (d[3], q[3]), file=sys.stderr)
        return 1

    rows = [
        ("cold first request (s)", d[0], q[0], False),
        ("warm latency, median (ms)", d[1] * 1000, q[1] * 1000, False),
        ("burst of %d requests (s)" % a.requests, d[2], q[2], False),
        ("burst throughput (req/s)", a.requests / d[2], a.requests / q[2], True),
        ("%d inputs, one request* (s)" % a.requests, d[4], q[4], False),
    ]
    print()
    print("%-30s %12s %12s %22s" % ("", "DLHub", "Parsl HTEX", "DLHub advantage"))
    for name, dv, qv, higher_better in rows:
        ratio = dv / qv if higher_better else qv / dv
        print("%-30s %12.3f %12.3f %21.2fx" % (name, dv, qv, ratio))
    print("\n(advantage > 1 means DLHub is faster; same model, same cluster, same predictions)")
    print("* DLHub: one request with %d inputs, batched onto the pilot; Parsl: the same %d apps as the burst" % (a.requests, a.requests))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({name: {"dlhub": dv, "parsl": qv} for name, dv, qv, _ in rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
