#!/usr/bin/env python3
"""The iris model behind LitServe, the dedicated model server bench.py measures DLHub against.

Serves POST /predict with the bodies DLHub's run takes: {"input": [[f1, f2, f3, f4], ...]}, one
input of any number of rows, answered {"output": [class, ...]}, one class per row; or
{"inputs": [input, ...]}, answered {"outputs": [[class, ...], ...]}, one list per input. Any other
member (such as "cache") is ignored. LitServe's dynamic batching gathers up to --max-batch-size
requests (waiting at most --batch-timeout seconds for them); all their rows go to the model in one
predict call, as DLHub's batches do, and are split back per request and per input.

Written for litserve 0.2.19 (batching set on the LitAPI; benchmarks/litserve-requirements.txt pins
it). Run by bench.py from its own virtual environment (benchmarks/run makes it, with the workers'
scikit-learn, numpy and joblib); bench.py stops the server when it is done.
"""
import argparse

import joblib
import litserve as ls
import numpy as np


class IrisAPI(ls.LitAPI):
    def __init__(self, model_path, **batching):
        super().__init__(**batching)
        self.model_path = model_path

    def setup(self, device):
        self.model = joblib.load(self.model_path)

    def decode_request(self, request):
        """One request: (its rows, the number of rows of each of its inputs, whether it sent "inputs")."""
        if "inputs" in request:
            inputs = [np.asarray(x, dtype=float).reshape(-1, 4) for x in request["inputs"]]
            rows = np.concatenate(inputs) if inputs else np.empty((0, 4))
            return rows, [len(x) for x in inputs], True
        rows = np.asarray(request["input"], dtype=float).reshape(-1, 4)
        return rows, [len(rows)], False

    def batch(self, requests):
        # Requests hold different numbers of rows: one array of them all, and how to cut it back.
        return np.concatenate([r[0] for r in requests]), [r[1:] for r in requests]

    def predict(self, batch):
        if len(batch) == 3:  # max_batch_size 1: LitServe calls neither batch nor unbatch
            rows, sizes, many = batch
            return self._cut(self.model.predict(rows), sizes, many)
        rows, shapes = batch
        predictions = self.model.predict(rows)
        answers, start = [], 0
        for sizes, many in shapes:
            end = start + sum(sizes)
            answers.append(self._cut(predictions[start:end], sizes, many))
            start = end
        return answers

    @staticmethod
    def _cut(predictions, sizes, many):
        if not many:
            return {"output": predictions.tolist()}
        ends = np.cumsum(sizes)[:-1]
        return {"outputs": [p.tolist() for p in np.split(predictions, ends)]}

    def unbatch(self, output):
        return output

    def encode_response(self, output):
        return output


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, help="the iris model.joblib")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workers", type=int, default=1, help="inference worker processes")
    p.add_argument("--api-servers", type=int, default=1, help="HTTP server processes")
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--batch-timeout", type=float, default=0.001, help="seconds")
    a = p.parse_args()
    api = IrisAPI(a.model, max_batch_size=a.max_batch_size, batch_timeout=a.batch_timeout)
    # fast_queue: ZeroMQ between the HTTP servers and the workers, LitServe's advice above ~100 requests/s.
    # timeout=False: no request is dropped for waiting in the queue (wrk's own timeout bounds them).
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=a.workers, fast_queue=True, timeout=False)
    server.run(host="127.0.0.1", port=a.port, num_api_servers=a.api_servers, log_level="warning",
               generate_client_file=False)


if __name__ == "__main__":
    main()
