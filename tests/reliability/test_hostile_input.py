"""A table of nasty inputs against real gunicorn: each gets its documented status and code."""

from __future__ import annotations

import gzip
import socket
import time

import orjson
import pytest
import requests

from service.app import documented_statuses
from service.settings import Settings
from tests.integration.server import TOKEN, Gunicorn

from .conftest import Record

JSON = {"Content-Type": "application/json"}
AUTH = {"Authorization": f"Bearer {TOKEN}", **JSON}
CSV = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/csv"}
MAX_BATCH = Settings.model_fields["max_batch"].default
MAX_BODY = Settings.model_fields["max_body_bytes"].default
ROW = b"[1, 0, 0]"


def _inputs(rows: bytes) -> bytes:
    return b'{"inputs": ' + rows + b"}"


GZIP = {**JSON, "Content-Encoding": "gzip"}


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# (id, path, raw body or None, headers, expected status, expected code or None for success)
CASES: list[tuple[str, str, bytes | None, dict[str, str], int, str | None]] = [
    ("malformed json", "/predict", b"{not json", JSON, 400, "malformed_json"),
    ("truncated json", "/predict", b'{"inputs": [[1, 0, 0]', JSON, 400, "malformed_json"),
    ("empty body", "/predict", b"", JSON, 400, "malformed_json"),
    ("NaN literal", "/predict", _inputs(b"[[NaN, 0, 0]]"), JSON, 400, "malformed_json"),
    ("Infinity literal", "/predict", _inputs(b"[[Infinity, 0, 0]]"), JSON, 400, "malformed_json"),
    ("-Infinity literal", "/predict", _inputs(b"[[-Infinity, 0, 0]]"), JSON, 400, "malformed_json"),
    ("1e400 overflows", "/predict", _inputs(b"[[1e400, 0, 0]]"), JSON, 400, "malformed_json"),
    ("400-digit integer", "/predict", _inputs(b"[[" + b"9" * 400 + b", 0, 0]]"), JSON, 400, "malformed_json"),
    ("minus zero", "/predict", _inputs(b"[[-0, -0.0, 0]]"), JSON, 200, None),
    ("30-digit integer", "/predict", _inputs(b"[[" + b"9" * 30 + b", 0, 0]]"), JSON, 200, None),
    ("boolean in a row", "/predict", _inputs(b"[[true, 0, 0]]"), JSON, 422, "validation_error"),
    ("string in a row", "/predict", _inputs(b'[["1", 0, 0]]'), JSON, 422, "validation_error"),
    ("null in a row", "/predict", _inputs(b"[[null, 0, 0]]"), JSON, 422, "validation_error"),
    ("object in a row", "/predict", _inputs(b'[[{"a": 1}, 0, 0]]'), JSON, 422, "validation_error"),
    ("nested lists", "/predict", _inputs(b"[[[1, 0, 0]]]"), JSON, 422, "validation_error"),
    ("ragged rows", "/predict", _inputs(b"[[1, 0, 0], [1, 0]]"), JSON, 422, "validation_error"),
    ("flat list", "/predict", _inputs(b"[1, 0, 0]"), JSON, 422, "validation_error"),
    ("empty batch", "/predict", _inputs(b"[]"), JSON, 422, "validation_error"),
    ("empty row", "/predict", _inputs(b"[[]]"), JSON, 422, "validation_error"),
    ("wrong width", "/predict", _inputs(b"[[1, 0]]"), JSON, 422, "validation_error"),
    ("inputs null", "/predict", _inputs(b"null"), JSON, 422, "validation_error"),
    ("inputs a string", "/predict", _inputs(b'"[[1, 0, 0]]"'), JSON, 422, "validation_error"),
    ("body is null", "/predict", b"null", JSON, 422, "validation_error"),
    ("body is a list", "/predict", b"[[1, 0, 0]]", JSON, 422, "validation_error"),
    ("body is a string", "/predict", b'"inputs"', JSON, 422, "validation_error"),
    (f"batch of MAX ({MAX_BATCH})", "/predict", _inputs(b"[" + b",".join([ROW] * MAX_BATCH) + b"]"), JSON, 200, None),
    (f"batch of MAX+1 ({MAX_BATCH + 1})", "/predict", _inputs(b"[" + b",".join([ROW] * (MAX_BATCH + 1)) + b"]"), JSON, 422, "validation_error"),
    ("body of MAX_BODY+1 bytes", "/predict", _inputs(b"[" + b" " * (MAX_BODY - 15) + ROW + b"]"), JSON, 413, "payload_too_large"),
    ("deeply nested body (100000)", "/predict", _nested(100_000), JSON, 400, "malformed_json"),
    ("deeply nested inputs (1000)", "/predict", _inputs(_nested(1000)), JSON, 422, "validation_error"),
    ("nested just under the parser limit", "/predict", _nested(1020), JSON, 422, "validation_error"),
    ("deep nesting with a string", "/predict", b"[" * 1020 + b'"x"' + b"]" * 1020, JSON, 422, "validation_error"),
    ("deep nesting with a string, then a repeat", "/predict", b'{"a": ' + b"[" * 1020 + b'"x"' + b"]" * 1020 + b', "a": 1}', JSON, 400, "malformed_json"),
    ("duplicate key", "/predict", b'{"inputs": [[1, 0, 0]], "inputs": [[0, 0, 1]]}', JSON, 400, "malformed_json"),
    ("duplicate nested key", "/admin/retrain", b'{"iterations": 10, "iterations": 20}', AUTH, 400, "malformed_json"),
    ("escaped quotes, no duplicate", "/predict", b'{"inputs": [[1, 0, 0]], "x\\"y": 1}', JSON, 422, "validation_error"),
    ("unknown field", "/predict", b'{"inputs": [[1, 0, 0]], "extra": 1}', JSON, 422, "validation_error"),
    ("invalid UTF-8", "/predict", b'{"inputs": [[1, 0, 0]], "\xff\xfe": 1}', JSON, 400, "malformed_json"),
    ("UTF-16 body", "/predict", '{"inputs": [[1, 0, 0]]}'.encode("utf-16"), JSON, 400, "malformed_json"),
    ("no content type", "/predict", _inputs(b"[[1, 0, 0]]"), {}, 415, "unsupported_media_type"),
    ("text/plain", "/predict", _inputs(b"[[1, 0, 0]]"), {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    ("form content type", "/predict", b"inputs=1", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
    ("targets outside 0..1 (evaluate)", "/evaluate", b'{"inputs": [[1, 0, 0]], "targets": [1.5]}', JSON, 422, "validation_error"),
    ("negative target (retrain)", "/admin/retrain", b'{"inputs": [[1, 0]], "targets": [-0.1]}', AUTH, 422, "validation_error"),
    ("targets and rows differ", "/evaluate", b'{"inputs": [[1, 0, 0]], "targets": [1, 0]}', JSON, 422, "validation_error"),
    ("retrain body []", "/admin/retrain", b"[]", AUTH, 422, "validation_error"),
    ("retrain body 0", "/admin/retrain", b"0", AUTH, 422, "validation_error"),
    ("retrain body false", "/admin/retrain", b"false", AUTH, 422, "validation_error"),
    ("retrain body empty string", "/admin/retrain", b'""', AUTH, 422, "validation_error"),
    ("retrain body null", "/admin/retrain", b"null", AUTH, 422, "validation_error"),
    ("retrain body [1, 2]", "/admin/retrain", b"[1, 2]", AUTH, 422, "validation_error"),
    ("rollback body null", "/admin/rollback", b"null", AUTH, 422, "validation_error"),
    ("20,000 keys and a repeat", "/predict", b"{" + b",".join(b'"k%d":1' % i for i in range(20_000)) + b',"k0":1}', JSON, 400, "malformed_json"),
    ("iterations 0", "/admin/retrain", b'{"iterations": 0}', AUTH, 422, "validation_error"),
    ("iterations past the limit", "/admin/retrain", b'{"iterations": 1000001}', AUTH, 422, "validation_error"),
    ("iterations as a string", "/admin/retrain", b'{"iterations": "100"}', AUTH, 422, "validation_error"),
    ("iterations as a boolean", "/admin/retrain", b'{"iterations": true}', AUTH, 422, "validation_error"),
    ("learning rate 0", "/admin/retrain", b'{"learning_rate": 0}', AUTH, 422, "validation_error"),
    ("seed past 2**32-1", "/admin/retrain", b'{"seed": 4294967296}', AUTH, 422, "validation_error"),
    ("rollback version 0", "/admin/rollback", b'{"version": 0}', AUTH, 422, "validation_error"),
    ("rollback version unknown", "/admin/rollback", b'{"version": 99999999}', AUTH, 404, "not_found"),
    ("token in the query string only", f"/admin/retrain?token={TOKEN}&access_token={TOKEN}", b"", JSON, 401, "unauthorized"),
    ("no Authorization", "/admin/retrain", b"", JSON, 401, "unauthorized"),
    ("wrong token", "/admin/retrain", b"", {"Authorization": "Bearer wrong-token-0123456789"}, 401, "unauthorized"),
    ("empty bearer", "/admin/retrain", b"", {"Authorization": "Bearer "}, 401, "unauthorized"),
    ("bare Bearer", "/admin/retrain", b"", {"Authorization": "Bearer"}, 401, "unauthorized"),
    ("token differs in the last character", "/admin/retrain", b"", {"Authorization": f"Bearer {TOKEN[:-1]}{chr(ord(TOKEN[-1]) ^ 1)}"}, 401, "unauthorized"),
    ("token prefix", "/admin/retrain", b"", {"Authorization": f"Bearer {TOKEN[:-1]}"}, 401, "unauthorized"),
    ("token plus a character", "/admin/retrain", b"", {"Authorization": f"Bearer {TOKEN}x"}, 401, "unauthorized"),
    ("Basic scheme with the token", "/admin/retrain", b"", {"Authorization": f"Basic {TOKEN}"}, 401, "unauthorized"),
    ("non-ASCII token", "/admin/retrain", b"", {"Authorization": "Bearer t\u00f6ken-0123456789abcdef"}, 401, "unauthorized"),
    # Compressed bodies (docs/api.md): decoded before every reader, bombs refused while decoding
    ("gzip: a body", "/predict", gzip.compress(_inputs(b"[[1, 0, 0]]")), GZIP, 200, None),
    ("gzip: 4 MiB inflating to 4 GiB", "/predict", gzip.compress(b"\0" * 1024 * 1024, 9) * 4000, GZIP, 413, "payload_too_large"),
    ("gzip: nested", "/predict", gzip.compress(gzip.compress(_inputs(b"[[1, 0, 0]]"))), GZIP, 400, "malformed_json"),
    ("gzip: truncated", "/predict", gzip.compress(_inputs(b"[[1, 0, 0]]"))[:-12], GZIP, 400, "malformed_encoding"),
    ("gzip: plain bytes", "/predict", _inputs(b"[[1, 0, 0]]"), GZIP, 400, "malformed_encoding"),
    ("deflate: gzip bytes", "/predict", gzip.compress(_inputs(b"[[1, 0, 0]]")), {**JSON, "Content-Encoding": "deflate"}, 400, "malformed_encoding"),
    ("br: not taken", "/predict", _inputs(b"[[1, 0, 0]]"), {**JSON, "Content-Encoding": "br"}, 415, "unsupported_media_type"),
    ("gzip: a CSV, decoded and read", "/admin/retrain", gzip.compress(b"a,t\n1,0\nx,1\n"), {**CSV, "Content-Encoding": "gzip"}, 422, "validation_error"),
    # CSV training data (docs/training.md)
    ("csv: empty", "/admin/retrain", b"", CSV, 400, "malformed_csv"),
    ("csv: not UTF-8", "/admin/retrain", b"a,t\n\xff,1\n", CSV, 400, "malformed_csv"),
    ("csv: UTF-16", "/admin/retrain", "a,t\n1,0\n".encode("utf-16"), CSV, 400, "malformed_csv"),
    ("csv: ragged row", "/admin/retrain", b"a,t\n1,0\n1,0,1\n", CSV, 400, "malformed_csv"),
    ("csv: unclosed quote", "/admin/retrain", b'a,t\n"1,0\n', CSV, 400, "malformed_csv"),
    ("csv: one huge field", "/admin/retrain", b"a,t\n" + b"1" * 200_000 + b",0\n", CSV, 400, "malformed_csv"),
    ("csv: no header", "/admin/retrain", b"1,0\n0,1\n", CSV, 422, "validation_error"),
    ("csv: duplicate names", "/admin/retrain", b"a,a,t\n1,2,0\n", CSV, 422, "validation_error"),
    ("csv: unknown target", "/admin/retrain?target=nope", b"a,t\n1,0\n", CSV, 422, "validation_error"),
    ("csv: not a number", "/admin/retrain", b"a,t\n1,0\nx,1\n", CSV, 422, "validation_error"),
    ("csv: NaN", "/admin/retrain", b"a,t\nNaN,1\n", CSV, 422, "validation_error"),
    ("csv: 1e400", "/admin/retrain", b"a,t\n1e400,1\n", CSV, 422, "validation_error"),
    ("csv: target 0.5", "/admin/retrain", b"a,t\n1,0.5\n", CSV, 422, "validation_error"),
    ("csv: too many features", "/admin/retrain", b",".join(b"c%d" % i for i in range(1002)) + b"\n", CSV, 422, "validation_error"),
    ("csv: too many rows", "/admin/retrain", b"a,t\n" + b"1,0\n" * 10_001, CSV, 413, "payload_too_large"),
    ("csv: bad query", "/admin/retrain?learning_rate=-1", b"a,t\n1,0\n", CSV, 422, "validation_error"),
    ("csv: latin-1 charset", "/admin/retrain", b"a,t\n1,0\n", {**CSV, "Content-Type": "text/csv; charset=latin-1"}, 415, "unsupported_media_type"),
    ("json body with a query", "/admin/retrain?standardize=true", b"{}", AUTH, 422, "validation_error"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_nasty_input_gets_its_documented_status(
    shared_server: Gunicorn,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
    code: str | None,
) -> None:
    response = requests.post(f"{shared_server.url}{path}", data=body, headers=headers, timeout=30)
    assert response.status_code == status, response.text[:500]
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    answer = response.json()
    if code is None:
        assert "error" not in answer
    else:
        assert answer["error"]["code"] == code
        assert status in documented_statuses(path.partition("?")[0], "post")
    assert "Traceback" not in response.text
    assert TOKEN not in response.text


def _raw(server: Gunicorn, request: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and b"}" in chunk:
                break
        return b"".join(chunks)


def test_oversized_body_is_refused_before_it_is_sent(shared_server: Gunicorn) -> None:
    """Content-Length past the limit and no body at all: the 413 comes without waiting."""
    started = time.monotonic()
    head = (
        f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {MAX_BODY + 1}\r\n\r\n"
    ).encode()
    answer = _raw(shared_server, head)
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    body = orjson.loads(answer.partition(b"\r\n\r\n")[2])
    assert body["error"]["code"] == "payload_too_large"
    assert elapsed < 2.0


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(b"GARBAGE\r\n\r\n", 400, id="invalid request line"),
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 20_000 + b"\r\n\r\n", 431, id="huge header"),
        pytest.param(b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, id="huge request line"),
        pytest.param(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, id="negative length"),
        pytest.param(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, id="length and chunked"),
    ],
)  # fmt: skip
def test_broken_http_is_refused_without_a_5xx(
    shared_server: Gunicorn, request_bytes: bytes, status: int
) -> None:
    answer = _raw(shared_server, request_bytes)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    assert b"Traceback" not in answer
    assert shared_server.get("/healthz").status_code == 200


def _oip(data: bytes, name: bytes = b"input0", extra: bytes = b"") -> bytes:
    return (
        b'{"inputs": [{"name": "' + name + b'", "shape": [1, 3], "datatype": "FP64", '
        b'"data": ' + data + b"}]" + extra + b"}"
    )


OIP_CASES = [
    ("valid", _oip(b"[1, 0, 0]"), 200),
    ("duplicate top-level key", _oip(b"[1, 0, 0]", extra=b', "inputs": []'), 400),
    ("duplicate key in a tensor", _oip(b"[1, 0, 0]").replace(b'"name": "input0"', b'"name": "input0", "name": "x"'), 400),
    ("string in data", _oip(b'["1", 0, 0]'), 400),
    ("boolean in data", _oip(b"[true, 0, 0]"), 400),
    ("null in data", _oip(b"[null, 0, 0]"), 400),
    ("NaN literal", _oip(b"[NaN, 0, 0]"), 400),
    ("1e400", _oip(b"[1e400, 0, 0]"), 400),
    ("shape and data disagree", _oip(b"[1, 0]"), 400),
    ("deeply nested data", _oip(_nested(1000)), 400),
    ("input of another name", _oip(b"[1, 0, 0]", name=b"x"), 200),
    ("two inputs", _oip(b"[1, 0, 0]").replace(b"}]", b'}, {"name": "b", "shape": [1, 3], "datatype": "FP64", "data": [1, 0, 0]}]'), 400),
    ("shape of strings", _oip(b"[1, 0, 0]").replace(b"[1, 3]", b'["1", "3"]'), 400),
    ("shape of floats", _oip(b"[1, 0, 0]").replace(b"[1, 3]", b"[1.0, 3.0]"), 400),
    ("shape with a boolean", _oip(b"[1, 0, 0]").replace(b"[1, 3]", b"[true, 3]"), 400),
    ("KServe SDK's body: id and model_name", _oip(b"[1, 0, 0]", extra=b', "id": "3f2a", "model_name": "neuron"'), 200),
    ("model_name of another model", _oip(b"[1, 0, 0]", extra=b', "model_name": "iris"'), 400),
    ("model_name of 10,000 characters", _oip(b"[1, 0, 0]", extra=b', "model_name": "' + b"n" * 10_000 + b'"'), 400),
    ("model_version of no version", _oip(b"[1, 0, 0]", extra=b', "model_version": "9"'), 400),
    ("model_version a number", _oip(b"[1, 0, 0]", extra=b', "model_version": 1'), 400),
    ("unknown fields, top and tensor", _oip(b'[1, 0, 0], "hint": {"a": [1]}', extra=b', "priority": [1, {"b": null}]'), 200),
    ("body is null", b"null", 400),
    ("body is a list", b"[]", 400),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status"), [pytest.param(*case[1:], id=case[0]) for case in OIP_CASES]
)
def test_nasty_open_inference_protocol_input(
    shared_server: Gunicorn, body: bytes, status: int
) -> None:
    """The /v2 adapter answers with the protocol's own error shape: {"error": "<message>"}."""
    response = requests.post(
        f"{shared_server.url}/v2/models/neuron/infer", data=body, headers=JSON, timeout=30
    )
    assert response.status_code == status, response.text[:500]
    assert response.headers["Content-Type"] == "application/json"
    answer = response.json()
    if status == 200:
        assert answer["outputs"][0]["data"][0] == pytest.approx(0.99993704, abs=1e-6)
    else:
        assert isinstance(answer["error"], str) and "Traceback" not in answer["error"]


def test_the_whole_table_left_the_model_and_log_clean(
    shared_server: Gunicorn, record: Record
) -> None:
    """Runs last in the module: no 5xx logged, no traceback, model unchanged."""
    lines = shared_server.log_lines()
    statuses = [line["status"] for line in lines if line.get("msg") == "request"]
    errors = [line for line in lines if line["level"] in ("error", "critical")]
    answer = shared_server.get("/model").json()
    record(
        load=f"{len(CASES)} hand-written inputs and {len(OIP_CASES)} for /v2 infer, "
        "1 request each; 5 broken HTTP requests",
        faults="malformed/truncated JSON, NaN/Infinity, 1e400, huge ints, booleans, strings, "
        "null, ragged, empty, MAX+1 batch, MAX_BODY+1, nesting 100000 deep, duplicate keys, "
        "unknown fields, bad content types, invalid UTF-8, bad tokens",
        failures=f"{sum(s >= 500 for s in statuses)} 5xx, {len(errors)} error log lines",
        requests=len(statuses),
    )
    assert len(statuses) >= len(CASES) + len(OIP_CASES)
    assert not [s for s in statuses if s >= 500]
    assert errors == []
    assert answer["version"] == 1
    assert "Traceback" not in shared_server.log()
