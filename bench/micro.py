"""Micro-suite (timeit): the pieces of a predict request, in-process, no HTTP.

Run by `make bench` (through bench/run.py) or alone: ``python -m bench.micro``.
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from service.http.jsonbody import decode
from service.model.neuron import Neuron
from service.schemas import PredictRequest


def _best_us(fn: Callable[[], Any], budget_s: float) -> dict[str, float]:
    """Median and min of several timeit repeats, each auto-sized to about budget/5 seconds."""
    timer = timeit.Timer(fn)
    number, took = timer.autorange()
    number = max(1, int(number * (budget_s / 5) / max(took, 1e-9)))
    samples = [t / number * 1e6 for t in timer.repeat(repeat=5, number=number)]
    return {"median_us": statistics.median(samples), "min_us": min(samples)}


def run(quick: bool = False) -> dict[str, dict[str, float]]:
    budget = 0.5 if quick else 1.5
    neuron = Neuron(np.array([[9.67], [-0.2], [-4.63]]))
    rng = np.random.default_rng(0)
    one = [[1, 0, 0]]
    many = rng.random((10_000, 3)).round(6).tolist()
    one_body = orjson.dumps({"inputs": one})
    many_body = orjson.dumps({"inputs": many})
    x_one, x_many = np.array(one, dtype=float), np.array(many)
    p_many = neuron(x_many)
    ctx = {"max_rows": 10_000, "numbers_only": True}
    cases: dict[str, Callable[[], Any]] = {
        "forward pass, 1 row": lambda: neuron(x_one),
        "forward pass, 10,000 rows": lambda: neuron(x_many),
        "validate 1 row (PredictRequest)": lambda: PredictRequest.model_validate(
            {"inputs": one}, context=ctx
        ),
        "validate 10,000 rows (PredictRequest)": lambda: PredictRequest.model_validate(
            {"inputs": many}, context=ctx
        ),
        "validate 10,000 rows, body may hold booleans": lambda: PredictRequest.model_validate(
            {"inputs": many}, context={"max_rows": 10_000}
        ),
        "body -> matrix, 10,000 rows: orjson.loads + PredictRequest": lambda: (
            PredictRequest.model_validate(orjson.loads(many_body), context=ctx)
        ),
        "read body (jsonbody.decode), 1 row": lambda: decode(one_body),
        "read body (jsonbody.decode), 10,000 rows": lambda: decode(many_body),
        "orjson decode, 1 row": lambda: orjson.loads(one_body),
        "orjson decode, 10,000 rows": lambda: orjson.loads(many_body),
        "json (stdlib) decode, 10,000 rows": lambda: json.loads(many_body),
        "orjson encode 10,000 predictions (numpy)": lambda: orjson.dumps(
            {"predictions": p_many, "model_version": 1}, option=orjson.OPT_SERIALIZE_NUMPY
        ),
        "json (stdlib) encode 10,000 predictions": lambda: json.dumps(
            {"predictions": p_many.tolist(), "model_version": 1}
        ),
    }
    cases.update(_v2_cases(neuron, rng.random((10_000, 3)).round(6)))
    cases.update(_array_body_cases(one_body, many_body))
    cases.update(_v2_json_fast_cases(rng.random((10_000, 3)).round(6)))
    cases.update(_drift_cases(x_one, x_many))
    out = {name: _best_us(fn, budget) for name, fn in cases.items()}
    out.update(docs_cost(rounds=10 if quick else 30))
    out.update(wsgi_predict_cost(rounds=10 if quick else 30))
    return out


def docs_cost(rounds: int = 30, number: int = 100) -> dict[str, dict[str, float]]:
    """POST /predict (1 row) with the /docs page enabled vs disabled: the page costs it nothing.

    Through Flask's test client (the whole app: hooks, routing, handler), and the URL match
    alone, the one step the page's routes could touch. The two apps alternate in short
    rounds (A B, B A, ...) so that a shared machine's drift touches both alike; the
    difference is taken per round.
    """
    from service.app import create_app
    from service.settings import Settings

    body = orjson.dumps({"inputs": [[1, 0, 0]]})
    steps: dict[str, list[Callable[[], Any]]] = {
        "POST /predict 1 row (test client)": [],
        "URL match of POST /predict": [],
    }
    with tempfile.TemporaryDirectory() as model_dir:
        for enabled in (True, False):
            settings = Settings(model_dir=model_dir, docs_enabled=enabled, log_level="warning")
            app = create_app(settings)
            client = app.test_client()
            steps["POST /predict 1 row (test client)"].append(
                partial(client.post, "/predict", data=body, content_type="application/json")
            )
            steps["URL match of POST /predict"].append(
                partial(app.url_map.bind("localhost").match, "/predict", "POST")
            )
        out: dict[str, dict[str, float]] = {}
        for name, (enabled_fn, disabled_fn) in steps.items():
            enabled_fn(), disabled_fn()  # warm-up
            on: list[float] = []
            off: list[float] = []
            for i in range(rounds):
                pair = [(enabled_fn, on), (disabled_fn, off)]
                for fn, samples in pair if i % 2 == 0 else reversed(pair):
                    samples.append(timeit.timeit(fn, number=number) / number * 1e6)
            diff = [a - b for a, b in zip(on, off, strict=True)]
            out[f"{name}, /docs enabled"] = _summary(on)
            out[f"{name}, /docs disabled"] = _summary(off)
            out[f"{name}: enabled minus disabled, per round"] = _summary(diff)
        return out


def _summary(samples: list[float]) -> dict[str, float]:
    return {"median_us": statistics.median(samples), "min_us": min(samples)}


def _v2_cases(neuron: Neuron, rows: np.ndarray[Any, Any]) -> dict[str, Callable[[], Any]]:
    """The V2 tensor codec, 10,000 FP64 rows: JSON and binary request to matrix, and back."""
    from service.oip.codec import (
        binary_response,
        inference_response,
        read_header,
        split_body,
        to_matrix,
    )
    from service.oip.schemas import InferenceRequest

    tensor = {"name": "input0", "shape": list(rows.shape), "datatype": "FP64"}
    json_body = orjson.dumps(
        {"inputs": [{**tensor, "data": rows.ravel()}]}, option=orjson.OPT_SERIALIZE_NUMPY
    )
    data = rows.astype("<f8").tobytes()
    header = orjson.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": len(data)}}]})
    binary_body, length = header + data, str(len(header))
    request = InferenceRequest.model_validate(orjson.loads(header))
    probabilities = neuron(rows)

    def from_binary() -> Any:
        head, binary = split_body(binary_body, length)
        return to_matrix(InferenceRequest.model_validate(read_header(head)), 10_000, binary)

    def from_json() -> Any:
        return to_matrix(InferenceRequest.model_validate(orjson.loads(json_body)), 10_000)

    return {
        "V2 binary body -> matrix, 10,000 rows (split, header, validate, frombuffer)": from_binary,
        "V2 JSON body -> matrix, 10,000 rows (orjson.loads, validate, to_matrix)": from_json,
        "V2 binary response, 10,000 FP64 outputs": lambda: binary_response(
            request, probabilities, 1, "FP64"
        ),
        "V2 JSON response, 10,000 FP64 outputs (orjson)": lambda: orjson.dumps(
            inference_response(request, probabilities, 1, "FP64"),
            option=orjson.OPT_SERIALIZE_NUMPY,
        ),
    }


def _drift_cases(x_one: np.ndarray, x_many: np.ndarray) -> dict[str, Callable[[], Any]]:
    """Counting rows for input drift (service/drift/), as infer() does after the forward pass:
    a window in files as under gunicorn, the classic model's bins (the default model's)."""
    from types import SimpleNamespace

    from service.drift import DriftMonitor
    from service.model.neuron import classic_training_set
    from service.model.statistics import Bins, describe
    from service.settings import Settings

    record: Any = SimpleNamespace(bins=Bins(describe(classic_training_set()[0])), version=1)
    window = tempfile.mkdtemp(prefix="bench-drift-")
    monitor = DriftMonitor(Settings(model_dir=window), Path(window))

    def single_rows() -> None:
        for _ in range(64):
            monitor.observe(x_one, record)
        monitor._batcher.flush()  # what the worker's counting thread does a few times a second

    def batch() -> None:
        monitor.observe(x_many, record)
        monitor._batcher.flush()

    return {
        "drift counting, 64 single rows (append each, one flush)": single_rows,
        "drift counting, 10,000 rows (a 256-row sample, one flush)": batch,
    }


def _array_body_cases(one_body: bytes, many_body: bytes) -> dict[str, Callable[[], Any]]:
    """Body -> validated PredictRequest: the general reader (jsonbody + pydantic) against the
    numbers-only fast path (service.http.arraybody: orjson for small bodies, simdjson for big)."""
    from service.http.web import _validate, from_array_body

    def general(body: bytes) -> Any:
        decoded = decode(body)
        return _validate(
            PredictRequest, decoded.payload, decoded.numbers_only, {"max_rows": 10_000}
        )

    return {
        "body -> PredictRequest, 1 row: general (jsonbody.decode + pydantic)": partial(
            general, one_body
        ),
        "body -> PredictRequest, 1 row: fast path (arraybody)": partial(
            from_array_body, PredictRequest, one_body, 10_000
        ),
        "body -> PredictRequest, 10,000 rows: general (jsonbody.decode + pydantic)": partial(
            general, many_body
        ),
        "body -> PredictRequest, 10,000 rows: fast path (arraybody, simdjson)": partial(
            from_array_body, PredictRequest, many_body, 10_000
        ),
    }


def _v2_json_fast_cases(rows: np.ndarray[Any, Any]) -> dict[str, Callable[[], Any]]:
    """A 10,000-row FP64 V2 JSON infer body -> matrix by codec.json_request (arraybody)."""
    from service.oip.codec import json_request

    tensor = {"name": "input0", "shape": list(rows.shape), "datatype": "FP64"}
    body = orjson.dumps(
        {"inputs": [{**tensor, "data": rows.ravel()}]}, option=orjson.OPT_SERIALIZE_NUMPY
    )
    return {
        "V2 JSON body -> matrix, 10,000 rows: fast path (json_request, arraybody)": partial(
            json_request, body, 10_000
        ),
    }


def gc_cost(requests: int = 30) -> dict[str, dict[str, float]]:
    """GC work per 10,000-row /predict (Flask test client), CPython defaults vs gunicorn.conf.py.

    Counted with gc.callbacks, so the figure is the collector's own time, not a wall-clock
    difference between two noisy runs.
    """
    from service.app import create_app
    from service.settings import Settings

    with tempfile.TemporaryDirectory() as model_dir:
        app = create_app(Settings(model_dir=model_dir, log_level="warning"))
        client = app.test_client()
        rows = np.random.default_rng(0).random((10_000, 3)).round(6)
        body = orjson.dumps({"inputs": rows}, option=orjson.OPT_SERIALIZE_NUMPY)
        spent = [0.0, 0.0]
        count = [0]

        def callback(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                spent[1] = time.perf_counter()
            else:
                spent[0] += time.perf_counter() - spent[1]
                count[0] += 1

        def measure() -> dict[str, float]:
            spent[0], count[0] = 0.0, 0
            for _ in range(requests):
                client.post("/predict", data=body, content_type="application/json")
            return {"collections": count[0] / requests, "gc_ms": spent[0] / requests * 1e3}

        out: dict[str, dict[str, float]] = {}
        threshold = gc.get_threshold()
        gc.callbacks.append(callback)
        try:
            measure()  # warm-up
            out["CPython defaults"] = measure()
            gc.collect()
            gc.freeze()
            gc.set_threshold(50_000, 10, 10)
            out["as gunicorn.conf.py sets (freeze, gen0 50,000)"] = measure()
        finally:
            gc.callbacks.remove(callback)
            gc.unfreeze()
            gc.set_threshold(*threshold)
        return out


def wsgi_predict_cost(rounds: int = 30, number: int = 300) -> dict[str, dict[str, float]]:
    """One WSGI call of POST /predict (1 row) against the Flask hello-world floor's POST.

    ``app.wsgi_app(environ, start_response)`` with a prepared environ: the whole service
    (hooks, metrics, access log at info, routing, validation, model, response) without a
    server around it. The two alternate in short rounds; the difference is taken per round.
    The access log goes to /dev/null meanwhile (still one write(2) per line). Metrics are in
    the mode this process started in: multiprocess (mmap) only if PROMETHEUS_MULTIPROC_DIR
    was set before prometheus_client was imported, as under gunicorn.
    """
    import io
    import os

    from werkzeug.test import EnvironBuilder

    from bench.floors import flask_app
    from service.app import create_app
    from service.settings import Settings

    body = b'{"inputs":[[1,0,0]]}'
    environ = EnvironBuilder(
        path="/predict", method="POST", data=body, content_type="application/json"
    ).get_environ()

    def call(app: Callable[..., Any]) -> None:
        env = {**environ, "wsgi.input": io.BytesIO(body)}
        out = app(env, lambda status, headers, exc_info=None: None)
        b"".join(out)
        getattr(out, "close", lambda: None)()

    stderr = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        with tempfile.TemporaryDirectory() as model_dir:
            service = create_app(Settings(model_dir=model_dir, log_level="info")).wsgi_app
            os.dup2(devnull, 2)
            pair = [partial(call, service), partial(call, flask_app.wsgi_app)]
            for fn in pair:
                fn()  # warm-up
            samples: tuple[list[float], list[float]] = ([], [])
            for i in range(rounds):
                order = (0, 1) if i % 2 == 0 else (1, 0)
                for k in order:
                    samples[k].append(timeit.timeit(pair[k], number=number) / number * 1e6)
    finally:
        os.dup2(stderr, 2)
        os.close(stderr)
        os.close(devnull)
    diff = [a - b for a, b in zip(*samples, strict=True)]
    return {
        "WSGI call, POST /predict 1 row (service)": _summary(samples[0]),
        "WSGI call, POST /predict (Flask hello-world floor)": _summary(samples[1]),
        "WSGI call: service minus floor, per round": _summary(diff),
    }


if __name__ == "__main__":
    sys.path.insert(0, ".")
    print(gc_cost())
    for name, r in run().items():
        print(f"{name:48s} {r['median_us']:10.1f} us  (min {r['min_us']:.1f})")
