"""Big requests reuse the worker's memory instead of faulting fresh pages in each time.

Page faults are counted, not timed: /proc/<worker>/stat's minflt over a run of requests.
Before service/server/malloc.py, a 10,000-row binary V2 infer cost 202 page faults per request.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
import requests

from service.server import malloc
from tests.integration.server import Gunicorn

ROWS = np.random.default_rng(7).random((10_000, 3))


def binary_infer() -> tuple[str, bytes, dict[str, str]]:
    data = ROWS.astype("<f8").tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input0",
                    "shape": list(ROWS.shape),
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": len(data)},
                }
            ],
            "outputs": [{"name": "output0", "parameters": {"binary_data": True}}],
        }
    )
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return "/v2/models/neuron/infer", header + data, headers


def json_predict() -> tuple[str, bytes, dict[str, str]]:
    body = orjson.dumps({"inputs": ROWS}, option=orjson.OPT_SERIALIZE_NUMPY)
    return "/predict", body, {"Content-Type": "application/json"}


def minor_faults(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def test_tune_applies_on_this_glibc() -> None:
    assert malloc.tune()


@pytest.mark.parametrize("request_of", [binary_infer, json_predict], ids=["binary", "json"])
def test_big_requests_fault_in_no_fresh_pages(tmp_path: Path, request_of) -> None:  # type: ignore[no-untyped-def]
    path, body, headers = request_of()
    server = Gunicorn(tmp_path / "server", workers=1).start()
    try:
        (worker,) = server.worker_pids()
        with requests.Session() as session:

            def send(count: int) -> None:
                for _ in range(count):
                    answer = session.post(server.url + path, data=body, headers=headers, timeout=10)
                    assert answer.status_code == 200, answer.text

            send(20)  # warm: the arenas grow to what one request needs
            before = minor_faults(worker)
            send(40)
            per_request = (minor_faults(worker) - before) / 40
    finally:
        server.stop()
    assert per_request < 20, f"{per_request:.0f} page faults per request"
