"""Compressed bodies through real gunicorn: tritonclient's and curl's, and gzip bombs.

tritonclient compresses with its documented options (``request_compression_algorithm``,
``response_compression_algorithm``) as it does against Triton; curl sends a gzip file as
users do. Each answer is compared with /predict on the same rows, sent plain.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient

from .server import Gunicorn, rss_mb

ROWS = np.random.default_rng(21).uniform(-3, 3, (500, 3))


def predicted(server: Gunicorn, rows: np.ndarray) -> np.ndarray:
    return np.array(server.post("/predict", {"inputs": rows.tolist()}).json()["predictions"])


@pytest.mark.parametrize("response", [None, "gzip"])
@pytest.mark.parametrize("request_", ["gzip", "deflate"])
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_compressing_both_ways_gets_what_predict_gives(
    shared_server: Gunicorn, binary: bool, request_: str, response: str | None
) -> None:
    client = httpclient.InferenceServerClient(
        url=f"127.0.0.1:{shared_server.port}", network_timeout=10.0
    )
    try:
        tensor = httpclient.InferInput("input0", list(ROWS.shape), "FP64")
        tensor.set_data_from_numpy(ROWS, binary_data=binary)
        result = client.infer(
            "neuron",
            [tensor],
            outputs=[httpclient.InferRequestedOutput("output0", binary_data=binary)],
            request_compression_algorithm=request_,
            response_compression_algorithm=response,
        )
    finally:
        client.close()
    assert np.array_equal(result.as_numpy("output0")[:, 0], predicted(shared_server, ROWS))


def test_curl_with_a_gzip_file_gets_the_same_answer(
    shared_server: Gunicorn, tmp_path: Path
) -> None:
    body = json.dumps({"inputs": ROWS.tolist()}).encode()
    (tmp_path / "body.json").write_bytes(body)
    (tmp_path / "body.json.gz").write_bytes(gzip.compress(body))
    url = f"{shared_server.url}/predict"
    json_type = ["-H", "Content-Type: application/json"]

    def curl(*args: str) -> bytes:
        done = subprocess.run(
            ["curl", "-s", "--max-time", "10", *args], capture_output=True, check=True, timeout=20
        )
        return done.stdout

    plain = curl(url, *json_type, "--data-binary", f"@{tmp_path / 'body.json'}")
    packed = curl(
        url,
        *json_type,
        "-H",
        "Content-Encoding: gzip",
        "--data-binary",
        f"@{tmp_path / 'body.json.gz'}",
    )
    assert packed == plain and json.loads(plain)["predictions"]
    # --compressed asks for gzip and decodes it, as a browser does
    assert (
        curl("--compressed", url, *json_type, "--data-binary", f"@{tmp_path / 'body.json'}")
        == plain
    )


MIB_OF_ZEROS = gzip.compress(b"\0" * 1024 * 1024, 9, mtime=0)  # about 1 kB: one gzip member
MAX_BODY = 4 * 1024 * 1024  # the default NEURON_MAX_BODY_BYTES


def _bomb(inflated_mib: int) -> bytes:
    """``inflated_mib`` MiB of zeros as that many gzip members, one after another (RFC 1952
    lets a body hold several): built at once, and the same ratio as one stream (about 1,000)."""
    return MIB_OF_ZEROS * inflated_mib


def _post_raw(server: Gunicorn, body: bytes) -> tuple[int, bytes]:
    """POST /predict with a gzip body over a plain socket; the status and the answer's body."""
    head = (
        f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((server.host, server.port), timeout=30) as conn:
        conn.sendall(head)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.sendall(body)  # refused by its Content-Length, the body may go unread
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(
    ("inflated", "needle"),
    [
        (MAX_BODY // len(MIB_OF_ZEROS), b"more than the limit"),  # a 4 MiB body of ~4 GiB
        (10 * 1024, b"over the limit of"),  # 10 GiB in 10 MB: refused by its length
    ],
    ids=["4 MiB to 4 GiB", "10 MB to 10 GiB"],
)
def test_a_gzip_bomb_is_a_413_and_the_worker_stays_small(
    one_worker: Gunicorn, inflated: int, needle: bytes
) -> None:
    [pid] = one_worker.worker_pids()
    for _ in range(3):  # warm: the first requests allocate what every later one reuses
        one_worker.post("/predict", {"inputs": ROWS.tolist()})
    idle = rss_mb(pid)
    bomb = _bomb(inflated)
    assert len(bomb) <= MAX_BODY or inflated == 10 * 1024
    started = time.monotonic()
    status, body = _post_raw(one_worker, bomb)
    elapsed = time.monotonic() - started
    assert status == 413 and needle in body, body[:300]
    assert rss_mb(pid) - idle < 50, (idle, rss_mb(pid))
    assert elapsed < 5
    assert one_worker.worker_pids() == {pid}  # the same worker, alive
    assert requests.post(f"{one_worker.url}/predict", json={"inputs": [[1, 0, 0]]}, timeout=5).ok
