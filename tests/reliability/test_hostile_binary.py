"""Hostile binary tensor data (V2 binary extension) against real gunicorn.

Every inconsistency gets a 400 (413 past the size limit) in the protocol's {"error": "..."}
form, never a 5xx; and the cost of a refused binary body grows linearly with its size
(the workers' CPU time per request, from /proc, for 1 MiB and 4 MiB bodies).
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import requests

from service.openapi import documented_statuses
from service.settings import Settings
from tests.integration.server import Gunicorn

from .conftest import Record

INFER = "/v2/models/neuron/infer"
MAX_BODY = Settings.model_fields["max_body_bytes"].default
MAX_BATCH = Settings.model_fields["max_batch"].default
HEADER = "Inference-Header-Content-Length"
JSON = {"Content-Type": "application/json"}
MIB = 1024 * 1024
NAN = struct.pack("<d", float("nan"))


def _tensor(shape: list[int], size: int, datatype: str = "FP64", **more: object) -> dict:
    return {
        "name": "input0",
        "shape": shape,
        "datatype": datatype,
        "parameters": {"binary_data_size": size},
        **more,
    }


def _binary(
    header: dict | bytes, data: bytes, length: int | str | None = None
) -> tuple[bytes, dict[str, str]]:
    """A body of a JSON header and binary data; the header length given, or the true one."""
    # json, not orjson: some headers hold integers past 64 bits.
    encoded = header if isinstance(header, bytes) else json.dumps(header).encode()
    value = str(len(encoded) if length is None else length)
    return encoded + data, {HEADER: value, "Content-Type": "application/octet-stream"}


def _rows(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}d", *values)


ROW = _rows(1, 0, 0)
VALID = {"inputs": [_tensor([1, 3], 24)]}

# (id, body and headers, expected status)
CASES: list[tuple[str, tuple[bytes, dict[str, str]], int]] = [
    ("valid", _binary(VALID, ROW), 200),
    ("valid, binary out", _binary({**VALID, "parameters": {"binary_data_output": True}}, ROW), 200),
    ("valid FP16", _binary({"inputs": [_tensor([1, 3], 6, "FP16")]}, struct.pack("<3e", 1, 0, 0)), 200),
    ("valid UINT64 at its end", _binary({"inputs": [_tensor([1, 3], 24, "UINT64")]}, struct.pack("<3Q", 2**64 - 1, 0, 0)), 200),
    (f"batch of MAX ({MAX_BATCH})", _binary({"inputs": [_tensor([MAX_BATCH, 3], MAX_BATCH * 24)]}, ROW * MAX_BATCH), 200),
    (f"batch of MAX+1 ({MAX_BATCH + 1})", _binary({"inputs": [_tensor([MAX_BATCH + 1, 3], (MAX_BATCH + 1) * 24)]}, ROW * (MAX_BATCH + 1)), 400),
    ("size below shape x datatype", _binary({"inputs": [_tensor([1, 3], 16)]}, ROW[:16]), 400),
    ("size above shape x datatype", _binary({"inputs": [_tensor([1, 3], 32)]}, ROW + ROW[:8]), 400),
    ("size right for FP32, datatype FP64", _binary({"inputs": [_tensor([2, 3], 24)]}, ROW), 400),
    ("huge size", _binary({"inputs": [_tensor([1, 3], 2**62)]}, ROW), 400),
    ("size past 2**64", _binary({"inputs": [_tensor([1, 3], 2**70)]}, ROW), 400),
    ("negative size", _binary({"inputs": [_tensor([1, 3], -24)]}, ROW), 400),
    ("size as a string", _binary({"inputs": [_tensor([1, 3], "24")]}, ROW), 400),  # type: ignore[arg-type]
    ("size as a float", _binary({"inputs": [_tensor([1, 3], 24.0)]}, ROW), 400),  # type: ignore[arg-type]
    ("size as a boolean", _binary({"inputs": [_tensor([1, 3], True)]}, ROW), 400),  # type: ignore[arg-type]
    ("missing binary section", _binary(VALID, b""), 400),
    ("half a section", _binary(VALID, ROW[:12]), 400),
    ("extra binary section", _binary(VALID, ROW + ROW), 400),
    ("one stray byte", _binary(VALID, ROW + b"\x00"), 400),
    ("binary bytes, JSON input", _binary({"inputs": [{"name": "input0", "shape": [1, 3], "datatype": "FP64", "data": [1, 0, 0]}]}, ROW), 400),
    ("JSON data and binary_data_size", _binary({"inputs": [_tensor([1, 3], 24, data=[1, 0, 0])]}, ROW), 400),
    ("neither data nor binary", _binary({"inputs": [{"name": "input0", "shape": [1, 3], "datatype": "FP64"}]}, b""), 400),
    ("binary_data_size, no header length", (json.dumps(VALID).encode() + ROW, {"Content-Type": "application/octet-stream"}), 400),
    ("binary_data_size, no header length, no content type", (json.dumps(VALID).encode() + ROW, {}), 400),
    ("header length past the body", _binary(VALID, ROW, length=len(json.dumps(VALID).encode()) + 25), 400),
    ("header length far past the body", _binary(VALID, ROW, length=2**63), 400),
    ("header length cuts the JSON", _binary(VALID, ROW, length=len(json.dumps(VALID).encode()) - 1), 400),
    ("header length takes binary bytes", _binary(VALID, ROW, length=len(json.dumps(VALID).encode()) + 1), 400),
    ("header length negative", _binary(VALID, ROW, length=-1), 400),
    ("header length 1.5", _binary(VALID, ROW, length="1.5"), 400),
    ("header length hex", _binary(VALID, ROW, length="0x10"), 400),
    ("header length empty", _binary(VALID, ROW, length=""), 400),
    ("header length 0 (raw binary)", _binary(VALID, ROW, length=0), 400),
    ("header length with 30 digits", _binary(VALID, ROW, length="9" * 30), 400),
    ("NaN", _binary(VALID, _rows(1, 0, float("nan"))), 400),
    ("+inf", _binary(VALID, _rows(float("inf"), 0, 0)), 400),
    ("-inf", _binary(VALID, _rows(float("-inf"), 0, 0)), 400),
    ("NaN with a payload", _binary(VALID, b"\x01\x00\x00\x00\x00\x00\xf8\x7f" + ROW[8:]), 400),
    ("FP32 NaN", _binary({"inputs": [_tensor([1, 3], 12, "FP32")]}, struct.pack("<3f", 0, 0, float("nan"))), 400),
    ("FP16 inf", _binary({"inputs": [_tensor([1, 3], 6, "FP16")]}, struct.pack("<3e", 0, float("inf"), 0)), 400),
    ("BOOL", _binary({"inputs": [_tensor([1, 3], 3, "BOOL")]}, b"\x01\x00\x00"), 400),
    ("BYTES", _binary({"inputs": [_tensor([1, 1], 5, "BYTES")]}, b"\x01\x00\x00\x00a"), 400),
    ("BF16", _binary({"inputs": [_tensor([1, 3], 6, "BF16")]}, b"\x00" * 6), 400),
    ("shape of three dimensions", _binary({"inputs": [_tensor([1, 1, 3], 24)]}, ROW), 400),
    ("flat shape", _binary({"inputs": [_tensor([3], 24)]}, ROW), 400),
    ("wrong width", _binary({"inputs": [_tensor([3, 1], 24)]}, ROW), 400),
    ("zero rows", _binary({"inputs": [_tensor([0, 3], 0)]}, b""), 400),
    ("zero width", _binary({"inputs": [_tensor([1, 0], 0)]}, b""), 400),
    ("negative shape", _binary({"inputs": [_tensor([-1, -3], 24)]}, ROW), 400),
    ("huge shape", _binary({"inputs": [_tensor([1, 2**62], 24)]}, ROW), 400),
    ("two binary inputs", _binary({"inputs": [_tensor([1, 3], 24), _tensor([1, 3], 24)]}, ROW + ROW), 400),
    ("unknown binary input", _binary({"inputs": [{**_tensor([1, 3], 24), "name": "x"}]}, ROW), 400),
    ("duplicate key in the header", _binary(json.dumps(VALID).encode()[:-1] + b', "inputs": []}', ROW), 400),
    ("duplicate binary_data_size", _binary(json.dumps(VALID).encode().replace(b'"binary_data_size": 24', b'"binary_data_size": 0, "binary_data_size": 24'), ROW), 400),
    ("header is not JSON", _binary(b"not json", ROW), 400),
    ("header is a list", _binary(b"[1, 2, 3]", ROW), 400),
    ("header invalid UTF-8", _binary(json.dumps({**VALID, "id": "x"}).encode().replace(b'"x"', b'"\xff"'), ROW), 400),
    ("header NaN literal", _binary(json.dumps(VALID).encode()[:-1] + b', "id": NaN}', ROW), 400),
    ("binary_data_output not a boolean", _binary({**VALID, "parameters": {"binary_data_output": 1}}, ROW), 400),
    ("binary_data not a boolean", _binary({**VALID, "outputs": [{"name": "output0", "parameters": {"binary_data": "yes"}}]}, ROW), 400),
    ("text/plain", (_binary(VALID, ROW)[0], {HEADER: str(len(json.dumps(VALID).encode())), "Content-Type": "text/plain"}), 415),
    ("body of MAX_BODY+1 bytes", _binary({"inputs": [_tensor([1, 3], 24)]}, ROW + b"\x00" * (MAX_BODY + 1 - len(json.dumps(VALID).encode()) - 24)), 413),
]  # fmt: skip


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
    rows = ROW + _rows(0, 1, 1)
    body, headers = _binary({"inputs": [_tensor([2, 3], 48)]}, rows)
    url = f"{shared_server.url}{INFER}"
    chunked = requests.post(
        url, data=iter([body[:10], body[10:-5], body[-5:]]), headers=headers, timeout=30
    )
    whole = requests.post(url, data=body, headers=headers, timeout=30)
    assert chunked.request.headers.get("Transfer-Encoding") == "chunked"
    assert chunked.status_code == whole.status_code == 200, chunked.text
    assert chunked.json() == whole.json()
    assert len(chunked.json()["outputs"][0]["data"]) == 2


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
    header = {"inputs": [_tensor([1, count], count * 8)]}
    return _binary(header, b"\x00" * (count * 8 - 8) + last)


def _extra(size: int) -> tuple[bytes, dict[str, str]]:
    """A valid row, then size bytes that belong to no input."""
    return _binary(VALID, ROW + b"\x00" * size)


def _disagreeing(size: int) -> tuple[bytes, dict[str, str]]:
    """binary_data_size says size bytes; shape [1, 3] of FP64 says 24."""
    return _binary({"inputs": [_tensor([1, 3], size)]}, b"\x00" * size)


def _header_runs_long(size: int) -> tuple[bytes, dict[str, str]]:
    """A JSON header padded with size bytes of whitespace and a duplicate key at its end."""
    header = json.dumps(VALID).encode()[:-1] + b" " * size + b', "inputs": []}'
    return _binary(header, ROW)


def _escaped_header(size: int) -> tuple[bytes, dict[str, str]]:
    """An id of size bytes of escaped quotes, then a duplicate: the exact check must run."""
    quotes = b'\\"' * (size // 2)
    header = json.dumps(VALID).encode()[:-1] + b', "id": "' + quotes + b'", "id": "x"}'
    return _binary(header, ROW)


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
