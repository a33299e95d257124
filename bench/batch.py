"""Load driver: big requests one after another on one keep-alive connection (10,000-row bodies)."""

from __future__ import annotations

import http.client
import statistics
import time
from typing import Any

from bench.configs import V2_INFER, Config
from tests.integration.server import TICK, cpu_ticks

BATCH_ROWS = 10_000
JSON = {"Content-Type": "application/json"}


def batch(
    config: Config,
    body: bytes,
    seconds: float,
    max_requests: int = 2000,
    path: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, float]:
    """Sequential requests for ``seconds``: median client wall time and server CPU per request."""
    server = config.server
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    headers = headers or JSON

    sizes: list[int] = []

    def one() -> float:
        t0 = time.perf_counter()
        conn.request("POST", path or config.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        elapsed = time.perf_counter() - t0
        if resp.status != 200:
            raise RuntimeError(f"{config.name}: {resp.status} {data[:200]!r}")
        sizes.append(len(data))
        return elapsed

    for _ in range(5):
        one()
    pids = server.pids()
    before = sum(cpu_ticks(p) for p in pids)
    walls: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and len(walls) < max_requests:
        walls.append(one())
    used = sum(cpu_ticks(p) for p in pids) - before
    conn.close()
    wall = statistics.median(walls)
    return {
        "wall_ms": wall * 1000,
        "cpu_ms": used / TICK * 1000 / len(walls),
        "rows_per_s": BATCH_ROWS / wall,
        "requests": len(walls),
        "answer_bytes": sizes[-1],
    }


def rows(seed: int = 0) -> Any:
    """The 10,000 x 3 rows every batch request carries (6 decimals, as a client would send)."""
    import numpy as np

    return np.random.default_rng(seed).random((BATCH_ROWS, 3)).round(6)


def predict_body(matrix: Any) -> bytes:
    """``POST /predict`` with ``matrix`` as JSON rows."""
    import orjson

    return orjson.dumps({"inputs": matrix}, option=orjson.OPT_SERIALIZE_NUMPY)


def v2_bodies(matrix: Any) -> dict[str, tuple[bytes, dict[str, str]]]:
    """A FP64 V2 infer as JSON, and as tritonclient sends it by default (binary both ways:
    the tensor's bytes after the JSON header, binary output asked for)."""
    import orjson

    tensor = {"name": "input0", "shape": list(matrix.shape), "datatype": "FP64"}
    as_json = orjson.dumps(
        {"inputs": [{**tensor, "data": matrix.ravel()}]}, option=orjson.OPT_SERIALIZE_NUMPY
    )
    data = matrix.astype("<f8").tobytes()
    header = orjson.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": len(data)}}],
            "outputs": [{"name": "output0", "parameters": {"binary_data": True}}],
        }
    )
    binary_headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return {"json": (as_json, JSON), "binary": (header + data, binary_headers)}


def mlserver_body(matrix: Any) -> bytes:
    """The same rows as MLServer's V2 JSON input."""
    import orjson

    tensor = {"name": "predict", "shape": list(matrix.shape), "datatype": "FP64"}
    return orjson.dumps(
        {"inputs": [{**tensor, "data": matrix.ravel()}]}, option=orjson.OPT_SERIALIZE_NUMPY
    )


def json_over_floor(service: Config, bare: Config, body: bytes, seconds: float) -> dict[str, Any]:
    """One repetition: the /predict body to the service, then the very same bytes to the floor."""
    return {"service": batch(service, body, seconds), "bare": batch(bare, body, seconds)}


def v2_over_floor(
    service: Config, bare: Config, matrix: Any, seconds: float
) -> dict[str, dict[str, float]]:
    """One repetition: each V2 body to the service, then the very same bytes to the bare floor."""
    out = {}
    for kind, (body, headers) in v2_bodies(matrix).items():
        out[f"service {kind}"] = batch(service, body, seconds, path=V2_INFER, headers=headers)
        out[f"bare {kind}"] = batch(bare, body, seconds, path=V2_INFER, headers=headers)
    return out


HIDDEN_UNITS = 64  # the size docs/training.md measures and recommends


def hidden_model(config: Config, matrix: Any) -> None:
    """Retrain ``config``'s server on the batch rows with a hidden layer of HIDDEN_UNITS."""
    import orjson

    from tests.integration.server import TOKEN

    labels = (matrix[:, 0] > matrix[:, 1]).astype(int)
    body = orjson.dumps(
        {"inputs": matrix[:2000], "targets": labels[:2000], "standardize": True,
         "hidden": {"units": HIDDEN_UNITS}, "iterations": 500},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )  # fmt: skip
    server = config.server
    conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
    headers = {**JSON, "Authorization": f"Bearer {TOKEN}"}
    conn.request("POST", "/admin/retrain", body=body, headers=headers)
    answer = conn.getresponse()
    text = answer.read()
    conn.close()
    if answer.status != 200:
        raise RuntimeError(f"{config.name}: retrain with a hidden layer: {answer.status} {text!r}")


def hidden_over_plain(
    plain: Config, hidden: Config, body: bytes, seconds: float
) -> dict[str, dict[str, float]]:
    """One repetition: the 10,000-row /predict to the plain neuron, then to the hidden layer's."""
    return {
        "plain neuron": batch(plain, body, seconds),
        f"hidden layer of {HIDDEN_UNITS}": batch(hidden, body, seconds),
    }


def drift_on_off(
    service: Config, nodrift: Config, body: bytes, seconds: float
) -> dict[str, dict[str, float]]:
    """One repetition: the 10,000-row /predict with drift counting on, then off."""
    return {"on": batch(service, body, seconds), "off": batch(nodrift, body, seconds)}


def gzip_over_plain(service: Config, body: bytes, seconds: float) -> dict[str, dict[str, float]]:
    """One repetition: the 10,000-row /predict answered plain, then gzipped (Accept-Encoding)."""
    return {
        "plain": batch(service, body, seconds),
        "gzip": batch(service, body, seconds, headers={**JSON, "Accept-Encoding": "gzip"}),
    }
