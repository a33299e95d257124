"""Hostile binary tensor data (V2 binary extension) against real gunicorn.

Every inconsistency gets a 400 (413 past the size limit) in the protocol's {"error": "..."}
form, never a 5xx; and the cost of a refused binary body grows linearly with its size
(the workers' CPU time per request, from /proc, for 1 MiB and 4 MiB bodies).
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import requests

from service.app import documented_statuses
from tests.binary_cases import (
    CASES,
    HEADER,
    INFER,
    JSON,
    MAX_BODY,
    MIB,
    NAN,
    ROW,
    VALID,
    binary,
    rows,
    tensor,
)
from tests.integration.server import Gunicorn

from .conftest import Record


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [pytest.param(*case[1], case[2], id=case[0]) for case in CASES],
)
def test_hostile_binary_request_gets_its_status(
    shared_server: Gunicorn, body: bytes, headers: dict[str, str], status: int
) -> None:
    response = requests.post(f"{shared_server.url}{INFER}", data=body, headers=headers, timeout=30)
    assert response.status_code == status, response.text[:500]
    assert status in documented_statuses("/v2/models/{model_name}/infer", "post")
    if status != 200:
        assert response.headers["Content-Type"] == "application/json"
        answer = response.json()
        assert set(answer) == {"error"}
        assert isinstance(answer["error"], str) and answer["error"]
        assert "Traceback" not in answer["error"]
        assert HEADER not in response.headers
    elif HEADER in response.headers:
        length = int(response.headers[HEADER])
        assert response.headers["Content-Type"] == "application/octet-stream"
        [output] = orjson.loads(response.content[:length])["outputs"]
        assert len(response.content) == length + output["parameters"]["binary_data_size"]
    else:
        assert all(0 <= p <= 1 for p in response.json()["outputs"][0]["data"])


def test_a_chunked_binary_body_is_read_whole(shared_server: Gunicorn) -> None:
    """No Content-Length (Transfer-Encoding: chunked): the same answer as with one."""
    data = ROW + rows(0, 1, 1)
    body, headers = binary({"inputs": [tensor([2, 3], 48)]}, data)
    url = f"{shared_server.url}{INFER}"
    chunked = requests.post(
        url, data=iter([body[:10], body[10:-5], body[-5:]]), headers=headers, timeout=30
    )
    whole = requests.post(url, data=body, headers=headers, timeout=30)
    assert chunked.request.headers.get("Transfer-Encoding") == "chunked"
    assert chunked.status_code == whole.status_code == 200, chunked.text
    assert chunked.json() == whole.json()
    assert len(chunked.json()["outputs"][0]["data"]) == 2


@pytest.mark.parametrize(
    "content_type",
    ["application/octet-stream", "application/octet-stream; charset=x"],
    ids=["binary lane", "Flask view"],
)
def test_a_body_cut_short_is_a_400(shared_server: Gunicorn, content_type: str) -> None:
    """The client says 100 bytes more than it sends, then closes its side."""
    body, headers = binary(VALID, ROW)
    head = (
        f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        f"{HEADER}: {headers[HEADER]}\r\nContent-Length: {len(body) + 100}\r\n\r\n"
    ).encode()
    answer = b""
    with socket.create_connection(("127.0.0.1", shared_server.port), timeout=5) as sock:
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    error = orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"]
    assert error == f"the body ended after {len(body)} of its {len(body) + 100} bytes"


def test_body_over_the_limit_is_refused_before_it_is_sent(shared_server: Gunicorn) -> None:
    head = (
        f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        f"{HEADER}: 10\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n"
    ).encode()
    answer = b""
    with socket.create_connection(("127.0.0.1", shared_server.port), timeout=5) as sock:
        sock.sendall(head)
        while not answer.endswith(b"}"):  # the JSON error ends the answer
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert set(orjson.loads(answer.partition(b"\r\n\r\n")[2])) == {"error"}


# -- cost grows linearly with size -------------------------------------------------------------


def _wide(size: int, last: bytes) -> tuple[bytes, dict[str, str]]:
    """One row of size bytes of FP64 (finite, or ending in ``last``)."""
    count = size // 8
    header = {"inputs": [tensor([1, count], count * 8)]}
    return binary(header, b"\x00" * (count * 8 - 8) + last)


def _extra(size: int) -> tuple[bytes, dict[str, str]]:
    """A valid row, then size bytes that belong to no input."""
    return binary(VALID, ROW + b"\x00" * size)


def _disagreeing(size: int) -> tuple[bytes, dict[str, str]]:
    """binary_data_size says size bytes; shape [1, 3] of FP64 says 24."""
    return binary({"inputs": [tensor([1, 3], size)]}, b"\x00" * size)


def _header_runs_long(size: int) -> tuple[bytes, dict[str, str]]:
    """A JSON header padded with size bytes of whitespace and a duplicate key at its end."""
    header = json.dumps(VALID).encode()[:-1] + b" " * size + b', "inputs": []}'
    return binary(header, ROW)


def _escaped_header(size: int) -> tuple[bytes, dict[str, str]]:
    """An id of size bytes of escaped quotes, then a duplicate: the exact check must run."""
    quotes = b'\\"' * (size // 2)
    header = json.dumps(VALID).encode()[:-1] + b', "id": "' + quotes + b'", "id": "x"}'
    return binary(header, ROW)


def _read_only(size: int) -> tuple[bytes, dict[str, str]]:
    """Refused as soon as it is read: the header length is past the body's end."""
    body, headers = _extra(size)
    return body, {**headers, HEADER: str(len(body) + 1)}


FAMILIES: dict[str, Callable[[int], tuple[bytes, dict[str, str]]]] = {
    "read only": _read_only,
    "NaN at the end of a wide row": lambda size: _wide(size, NAN),
    "wide finite row (wrong width)": lambda size: _wide(size, b"\x00" * 8),
    "bytes after the last section": _extra,
    "size disagreeing with the shape": _disagreeing,
    "header padded, duplicate key at its end": _header_runs_long,
    "header of escaped quotes": _escaped_header,
}
SIZES = (MIB, 4 * MIB - 4096)
REPEATS = 5
MAX_RATIO = 8.0  # linear is about 4 (less with fixed costs, more past the CPU caches); quadratic 16


def _workers_cpu_ns(server: Gunicorn) -> int:
    """CPU time the workers (all their threads) have run, from /proc's per-task schedstat.

    CPU time, not wall time: waiting for a big body to cross the socket costs the service
    nothing, and the other load on the machine does not count.
    """
    total = 0
    for pid in server.worker_pids():
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread ended
                total += int((task / "schedstat").read_text().split()[0])
    return total


def _cpu_ms(server: Gunicorn, body: bytes, headers: dict[str, str]) -> float:
    """The workers' CPU time per request, over REPEATS requests on one connection."""
    with requests.Session() as session:
        url = f"{server.url}{INFER}"
        session.post(url, data=b"{}", headers=JSON, timeout=30)  # connect and warm up
        before = _workers_cpu_ns(server)
        for _ in range(REPEATS):
            response = session.post(url, data=body, headers=headers, timeout=30)
            assert response.status_code == 400, response.text[:300]
            assert set(response.json()) == {"error"}
        return (_workers_cpu_ns(server) - before) / REPEATS / 1e6


@pytest.mark.parametrize("family", list(FAMILIES))
def test_cost_grows_linearly_with_size(
    shared_server: Gunicorn, record: Record, family: str
) -> None:
    bodies = {size: FAMILIES[family](size) for size in SIZES}
    # The least of 3 interleaved rounds: another process's burst inflates a round, never shrinks it.
    rounds = [{size: _cpu_ms(shared_server, *bodies[size]) for size in SIZES} for _ in range(3)]
    cost = {size: min(r[size] for r in rounds) for size in SIZES}
    small, large = cost[SIZES[0]], cost[SIZES[1]]
    ratio = large / small
    record(
        load=f"3 x {REPEATS} requests of {SIZES[0]} and of {SIZES[1]} bytes",
        faults=family,
        failures="none" if ratio < MAX_RATIO else f"cost ratio {ratio:.1f}",
        cpu_ms_1mib=round(small, 2),
        cpu_ms_4mib=round(large, 2),
        ratio=round(ratio, 2),
    )
    assert ratio < MAX_RATIO, cost


def test_the_binary_table_left_the_server_clean(shared_server: Gunicorn, record: Record) -> None:
    """Runs last in the module: no 5xx, no error log line, no traceback, the model unchanged."""
    lines = shared_server.log_lines()
    statuses = [line["status"] for line in lines if line.get("msg") == "request"]
    errors = [line for line in lines if line["level"] in ("error", "critical")]
    durations = [
        line["duration_ms"]
        for line in lines
        if line.get("msg") == "request" and line.get("path") == INFER
    ]
    record(
        load=f"{len(CASES)} binary V2 requests, 1 each; {len(FAMILIES)} families x "
        f"{len(SIZES)} sizes (1 and 4 MiB) x 3 x {REPEATS}",
        faults="sizes disagreeing with shape x datatype, missing/extra sections, bad header "
        "lengths, NaN/inf, BOOL/BYTES/BF16, bad shapes, duplicate keys, bad flags, over limit",
        failures=f"{sum(s >= 500 for s in statuses)} 5xx, {len(errors)} error log lines",
        requests=len(statuses),
        slowest_ms=round(max(durations, default=0.0), 1),
    )
    assert len(statuses) >= len(CASES)
    assert not [s for s in statuses if s >= 500]
    assert errors == []
    assert shared_server.get("/model").json()["version"] == 1
    assert "Traceback" not in shared_server.log()
