"""HTTP/1.1 on the wire, byte for byte, for each worker class gunicorn may run.

NEURON_HTTP_WORKER picks it (gunicorn.conf.py): `threads`, gthread (service/server/fairworker.py),
or `loop`, an event loop per worker (service/server/loopworker.py). Every test runs on both, over
raw sockets (tests/integration/rawhttp.py: requests go out exactly as written, responses are
framed by their Content-Length), so that a worker class is held to what clients and proxies
see: keep-alive and its idle close, pipelining, chunked request bodies, Expect: 100-continue,
HEAD, the request parser's limits, ambiguous framing (request smuggling), a slow client beside
a normal one, max_requests and a graceful stop. Where HTTP leaves a choice, the tables assert
what gthread answers today.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from service.settings import Settings

from .rawhttp import Conn, Response, chunked, request
from .server import ROOT, TOKEN, Gunicorn

pytestmark = pytest.mark.integration

WORKERS = ("threads", "loop")
_KEEPALIVE = re.search(r"^keepalive = (\d+)$", (ROOT / "gunicorn.conf.py").read_text(), re.M)
assert _KEEPALIVE is not None, "gunicorn.conf.py sets no keepalive"
KEEPALIVE = int(_KEEPALIVE.group(1))  # seconds an idle kept-alive connection stays open
MAX_BODY = Settings.model_fields["max_body_bytes"].default
JSON = {"Content-Type": "application/json"}
ROW = b'{"inputs": [[1, 0, 0]]}'
ROWS = b'{"inputs": [[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 1]]}'
CLASSIC = 0.9999370428352157  # the article's prediction for [1, 0, 0] (README.md)
HEALTHZ = request("GET", "/healthz")
PREDICT = request("POST", "/predict", ROW, JSON)


@pytest.fixture(scope="module", params=WORKERS)
def worker(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _gunicorn(
    workdir: Path, worker: str, workers: int = 2, options: Sequence[str] = ()
) -> Gunicorn:
    return Gunicorn(workdir, workers, env={"NEURON_HTTP_WORKER": worker}, options=options)


_STARTED_WITH: dict[str, set[int]] = {}  # worker class -> the shared server's first worker pids


@pytest.fixture(scope="module")
def served(worker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    """One server per worker class for every test that leaves its config and model alone."""
    server = _gunicorn(tmp_path_factory.mktemp(f"http-{worker}"), worker)
    try:
        server.start()
        _STARTED_WITH[worker] = server.worker_pids()
        yield server
    finally:
        server.stop()


def _one(server: Gunicorn, data: bytes, timeout: float = 5.0) -> Response:
    """The final answer to ``data`` sent on a connection of its own."""
    with Conn(server.port, timeout) as conn:
        conn.send(data)
        return conn.final_response()[1]


def _json(response: Response) -> dict[str, Any]:
    answer = response.json()
    assert isinstance(answer, dict), response
    return answer


def _predictions(response: Response) -> list[float]:
    return list(_json(response)["predictions"])


# -- keep-alive ------------------------------------------------------------------------------


def test_requests_on_one_connection_are_answered_in_order(served: Gunicorn) -> None:
    bodies = [ROW, ROWS, b'{"inputs": [[0, 1, 1]]}']
    expected = [_one(served, request("POST", "/predict", body, JSON)).body for body in bodies]
    assert len(set(expected)) == len(bodies)  # so an answer out of order would show
    with Conn(served.port) as conn:
        for round_ in range(2):
            for body, answer in zip(bodies, expected, strict=True):
                conn.send(request("POST", "/predict", body, JSON))
                response = conn.response()
                assert response.status == 200, (round_, response)
                assert response.body == answer
                assert not response.closes, response.headers
            conn.send(HEALTHZ)
            health = conn.response()
            assert (health.status, health.json()) == (200, _one(served, HEALTHZ).json())


def test_an_idle_keepalive_connection_is_closed_after_the_keepalive_timeout(
    served: Gunicorn,
) -> None:
    with Conn(served.port, timeout=KEEPALIVE + 5) as conn:
        conn.send(PREDICT)
        response = conn.response()
        assert (response.status, response.closes) == (200, False)
        idle = conn.closed_within(KEEPALIVE + 5)
    assert KEEPALIVE - 1 <= idle <= KEEPALIVE + 3, f"closed after {idle:.2f} s idle"


CLOSING = [
    ("HTTP/1.1, Connection: close", request("GET", "/healthz", headers={"Connection": "close"}), b"HTTP/1.1"),
    ("HTTP/1.0", b"GET /healthz HTTP/1.0\r\n\r\n", b"HTTP/1."),
    ("HTTP/1.0 POST, Connection: close", request("POST", "/predict", ROW, {**JSON, "Connection": "close"}, "HTTP/1.0"), b"HTTP/1."),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "version"), [pytest.param(*case[1:], id=case[0]) for case in CLOSING]
)
def test_a_closing_request_is_answered_then_the_connection_ends(
    served: Gunicorn, data: bytes, version: bytes
) -> None:
    """A request pipelined behind the closing one is never answered (RFC 9112 section 9.6)."""
    with Conn(served.port) as conn:
        conn.send(data + HEALTHZ)
        response = conn.response()
        assert response.status == 200, response
        assert response.version.startswith(version)
        assert response.closes, response.headers
        conn.closed_within(2.0)


def test_http10_keep_alive_is_honoured(served: Gunicorn) -> None:
    ask = b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    with Conn(served.port) as conn:
        for _ in range(3):
            conn.send(ask)
            response = conn.response()
            assert response.status == 200
            assert re.fullmatch(rb"HTTP/1\.[01]", response.version)
            assert (response.header("Connection") or "").lower() == "keep-alive"
            assert not response.closes


# -- pipelining ------------------------------------------------------------------------------


@pytest.mark.parametrize("write", [0, 1, 7], ids=["one write", "byte by byte", "7-byte writes"])
def test_pipelined_requests_get_every_answer_in_order(served: Gunicorn, write: int) -> None:
    batch = HEALTHZ + PREDICT + request("GET", "/model") + PREDICT + HEALTHZ
    with Conn(served.port) as conn:
        if write:
            conn.send_slowly([batch[i : i + write] for i in range(0, len(batch), write)], 0)
        else:
            conn.send(batch)
        answers = [conn.response() for _ in range(5)]
        assert conn.quiet_for(0.3), "bytes beyond the five answers"
    assert [a.status for a in answers] == [200] * 5, [a.status_line for a in answers]
    health, predict, model, again, health_again = answers
    assert health.json() == health_again.json() == _one(served, HEALTHZ).json()
    assert _predictions(predict) == _predictions(again) == [CLASSIC]
    assert _json(model)["version"] == 1
    assert len({a.header("X-Request-ID") for a in answers}) == 5
    assert not any(a.closes for a in answers)


# -- chunked request bodies ------------------------------------------------------------------


def _pieces(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


CHUNKINGS = [
    ("one chunk", chunked([ROWS]), 0),
    ("five-byte chunks", chunked(_pieces(ROWS, 5)), 0),
    ("chunk extensions", chunked(_pieces(ROWS, 16), b';ext=1;q="a b"'), 0),
    ("a trailer field", chunked(_pieces(ROWS, 16))[:-2] + b"X-Checksum: 1\r\n\r\n", 0),
    ("upper-case hex, leading zeros", b"".join(b"%04X\r\n%s\r\n" % (len(p), p) for p in _pieces(ROWS, 11)) + b"0\r\n\r\n", 0),
    ("sent in 3-byte writes", chunked(_pieces(ROWS, 7)), 3),
    ("a write per chunk", chunked(_pieces(ROWS, 7)), -1),
]  # fmt: skip


# A malformed chunked body (size "zz" or "-5", data past its size) is not in this file: on
# threads the app answers it 500 internal_error and logs a traceback, where 400 is right.
# gunicorn raises InvalidChunkSize from wsgi.input.read() inside the view, and the app's
# handler for unexpected errors takes it.


@pytest.mark.parametrize(
    ("body", "write"), [pytest.param(*case[1:], id=case[0]) for case in CHUNKINGS]
)
def test_a_chunked_body_is_answered_as_its_sized_twin(
    served: Gunicorn, body: bytes, write: int
) -> None:
    """The same rows by Content-Length and by chunks: the same answer, and the connection
    reads the next request where the chunked body ended."""
    sized = _one(served, request("POST", "/predict", ROWS, JSON))
    assert sized.status == 200 and len(_predictions(sized)) == 4
    head = request("POST", "/predict", b"", {**JSON, "Transfer-Encoding": "chunked"})
    with Conn(served.port) as conn:
        if write == 0:
            conn.send(head + body)
        else:
            cuts = [m.end() for m in re.finditer(rb"\r\n(?=[0-9a-fA-F]+\r\n)", body)]
            pieces = (
                _pieces(body, write)
                if write > 0
                else [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
            )
            conn.send_slowly([head, *pieces], 0.01)
        response = conn.response()
        assert response.status == 200, response
        assert response.json() == sized.json()
        assert not response.closes
        conn.send(PREDICT)
        after = conn.response()
        assert (after.status, _predictions(after)) == (200, [CLASSIC])


# -- Expect: 100-continue --------------------------------------------------------------------


def test_expect_100_continue_gets_a_100_before_the_body_is_sent(served: Gunicorn) -> None:
    head = request("POST", "/predict", None, {**JSON, "Content-Length": str(len(ROW)), "Expect": "100-continue"})  # fmt: skip
    with Conn(served.port) as conn:
        conn.send(head)
        interim = conn.response(timeout=2.0)
        assert interim.status_line == b"HTTP/1.1 100 Continue", interim
        assert interim.body == b""
        assert conn.quiet_for(0.2), "the final answer came before the body"
        conn.send(ROW)
        response = conn.response()
    assert (response.status, _predictions(response)) == (200, [CLASSIC])


def test_expect_100_continue_past_the_body_limit_gets_413_without_the_body(
    served: Gunicorn,
) -> None:
    """gthread sends its 100 Continue before the app has looked at the request (gunicorn
    writes it while building the environ), then the app's 413: a 100 first is allowed here,
    but the 413 must come without a byte of the body."""
    head = request("POST", "/predict", None, {**JSON, "Content-Length": str(MAX_BODY + 1), "Expect": "100-continue"})  # fmt: skip
    started = time.monotonic()
    with Conn(served.port) as conn:
        conn.send(head)
        interim, response = conn.final_response(timeout=2.0)
    assert all(r.status_line == b"HTTP/1.1 100 Continue" for r in interim), interim
    assert response.status == 413, response
    assert _json(response)["error"]["code"] == "payload_too_large"
    assert response.received_at - started < 2.0


@pytest.mark.parametrize("body_bytes", [2 * MAX_BODY, 64 * 1024 * 1024])
def test_a_body_refused_while_it_is_sent_still_gets_its_413(
    served: Gunicorn, body_bytes: int
) -> None:
    """A client that sends its whole body before reading (no Expect) must read the 413, not a
    reset: closing a socket with unread bytes makes the kernel reset the connection, and the
    reset can overtake the answer. Five times, since a reset is a race."""
    head = request("POST", "/predict", None, {**JSON, "Content-Length": str(body_bytes)})
    body = b"[" * body_bytes
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
            sock.sendall(head)
            # the server may stop reading after a while; the answer must be there all the same
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(body)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]


def test_expect_100_continue_is_ignored_on_http10(served: Gunicorn) -> None:
    """RFC 9110 section 10.1.1: a server MUST ignore the expectation in an HTTP/1.0 request."""
    head = request("POST", "/predict", None, {**JSON, "Content-Length": str(len(ROW)), "Expect": "100-continue"}, "HTTP/1.0")  # fmt: skip
    with Conn(served.port) as conn:
        conn.send(head)
        assert conn.quiet_for(1.0), f"answered before the body: {bytes(conn.buf[:200])!r}"
        conn.send(ROW)
        interim, response = conn.final_response()
    assert interim == []
    assert (response.status, _predictions(response)) == (200, [CLASSIC])


# -- HEAD ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/openapi.json"])
def test_head_answers_the_headers_of_a_get_and_no_body(served: Gunicorn, path: str) -> None:
    get = _one(served, request("GET", path))
    assert get.status == 200 and get.header("Content-Length") == str(len(get.body))
    with Conn(served.port) as conn:
        conn.send(request("HEAD", path))
        head = conn.response(head=True)
        assert head.status == 200
        assert head.header("Content-Length") == str(len(get.body))
        assert head.header("Content-Type") == get.header("Content-Type")
        assert conn.quiet_for(0.3), f"bytes after a HEAD answer: {bytes(conn.buf[:200])!r}"
        conn.send(request("GET", path))
        again = conn.response()
    assert (again.status, again.body) == (200, get.body)


# -- limits, refused before any body ---------------------------------------------------------


def _request_line(length: int) -> bytes:
    """GET /healthz?p=aaa... HTTP/1.1 of exactly ``length`` bytes (without its CRLF)."""
    bare = b"GET /healthz?p= HTTP/1.1"
    return b"GET /healthz?p=" + b"a" * (length - len(bare)) + b" HTTP/1.1"


def _with_field(line: bytes) -> bytes:
    return b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + line + b"\r\n\r\n"


def _fields(count: int) -> bytes:
    """A GET with ``count`` header fields, Host included."""
    return (
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + b"".join(b"X-F%d: v\r\n" % i for i in range(count - 1))
        + b"\r\n"
    )


def _length(value: str) -> bytes:
    return (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: "
        + value.encode()
        + b"\r\n\r\n"
    )


# (id, request (never a body), status, whether the server must close after answering)
# gunicorn's defaults: a request line of up to 4094 bytes, 100 header fields, 8190 bytes per
# field line counting its CRLF.
LIMITS = [
    ("request line of 4094 bytes", _request_line(4094) + b"\r\nHost: 127.0.0.1\r\n\r\n", 200, False),
    ("request line of 4095 bytes", _request_line(4095) + b"\r\nHost: 127.0.0.1\r\n\r\n", 414, True),
    ("request line of 20000 bytes", _request_line(20_000) + b"\r\nHost: 127.0.0.1\r\n\r\n", 414, True),
    ("field line of 8190 bytes with its CRLF", _with_field(b"X-A: " + b"a" * 8183), 200, False),
    ("field line of 8191 bytes with its CRLF", _with_field(b"X-A: " + b"a" * 8184), 431, True),
    ("field line of 60000 bytes", _with_field(b"X-A: " + b"a" * 60_000), 431, True),
    ("100 header fields", _fields(100), 200, False),
    ("101 header fields", _fields(101), 431, True),
    ("1000 header fields", _fields(1000), 431, True),
    (f"Content-Length MAX_BODY+1 ({MAX_BODY + 1})", _length(str(MAX_BODY + 1)), 413, False),
    ("Content-Length of 30 digits", _length("9" * 30), 413, False),
    ("Content-Length -1", _length("-1"), 400, True),
    ("Content-Length abc", _length("abc"), 400, True),
    ("Content-Length +23", _length("+23"), 400, True),
    ("Content-Length 0x17", _length("0x17"), 400, True),
    ("Content-Length 2 3", _length("2 3"), 400, True),
    ("Content-Length 23.0", _length("23.0"), 400, True),
    ("Content-Length empty", _length(""), 400, True),
    ("Content-Length in full-width digits", _length("\uff12\uff13"), 400, True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "status", "closes"), [pytest.param(*case[1:], id=case[0]) for case in LIMITS]
)
def test_limits_are_answered_before_any_body(
    served: Gunicorn, data: bytes, status: int, closes: bool
) -> None:
    started = time.monotonic()
    with Conn(served.port) as conn:
        conn.send(data)
        interim, response = conn.final_response(timeout=2.0)
        assert interim == []
        assert response.status == status, response
        assert response.received_at - started < 2.0
        if closes:
            assert response.closes, response.headers
            conn.closed_within(2.0)
    if status == 413:
        assert _json(response)["error"]["code"] == "payload_too_large"


# -- ambiguous framing -----------------------------------------------------------------------


_POST = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
_SMUGGLED = b"0\r\n\r\n" + HEALTHZ  # a chunked body's end, then a request of its own

# (id, request, the statuses allowed). Each is followed on its connection by GET /healthz,
# which must never be answered: either framing the server could pick leaves bytes it would
# read as a second request.
FRAMING = [
    ("CL.TE smuggling", _POST + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(_SMUGGLED) + _SMUGGLED, (400,)),
    ("TE.CL smuggling", _POST + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n" + b"%x\r\n" % len(HEALTHZ) + HEALTHZ + b"\r\n0\r\n\r\n", (400,)),
    ("two different Content-Length", _POST + b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (len(ROW), len(ROW) + 5) + ROW + b"     ", (400,)),
    ("TE chunked, identity", _POST + b"Transfer-Encoding: chunked, identity\r\n\r\n" + chunked([ROW]), (400,)),
    ("TE chunked, chunked", _POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n" + chunked([chunked([ROW])]), (400,)),
    ("TE chunked on two lines", _POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked([chunked([ROW])]), (400,)),
    ("TE gzip alone, with a length", _POST + b"Transfer-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(ROW) + ROW, (400,)),
    ("TE identity, with a length", _POST + b"Transfer-Encoding: identity\r\nContent-Length: %d\r\n\r\n" % len(ROW) + ROW, (400,)),
    ("TE chunked in HTTP/1.0", _POST.replace(b"HTTP/1.1", b"HTTP/1.0") + b"Transfer-Encoding: chunked\r\n\r\n" + chunked([ROW]), (400,)),
    ("space before the colon", _POST + b"Transfer-Encoding : chunked\r\nContent-Length: %d\r\n\r\n" % len(_SMUGGLED) + _SMUGGLED, (400,)),
    ("TE xchunked, with a length", _POST + b"Transfer-Encoding: xchunked\r\nContent-Length: %d\r\n\r\n" % len(_SMUGGLED) + _SMUGGLED, (400, 501)),
    # gthread answers 200 here: it accepts gzip as a transfer coding but never decodes it (the
    # app reads the body as sent), so only that nothing is smuggled is asserted.
    ("TE gzip, chunked", _POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n" + chunked([ROW]), (200, 400, 501)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "statuses"), [pytest.param(*case[1:], id=case[0]) for case in FRAMING]
)
def test_ambiguous_framing_is_refused_and_smuggles_nothing(
    served: Gunicorn, data: bytes, statuses: tuple[int, ...]
) -> None:
    with Conn(served.port) as conn:
        conn.send(data + HEALTHZ)
        interim, response = conn.final_response(timeout=3.0)
        assert interim == []
        assert response.status in statuses, response
        assert response.closes, response.headers
        conn.closed_within(3.0)  # and no second answer before the close


# -- slow clients ----------------------------------------------------------------------------


def test_a_slow_client_does_not_delay_a_request_on_another_connection(served: Gunicorn) -> None:
    head = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Slow: " + b"s" * 100  # fmt: skip
    stop = threading.Event()
    sent: list[int] = []
    problems: list[str] = []

    def dribble() -> None:
        try:
            with Conn(served.port) as slow:
                slow.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for count, byte in enumerate(head[:40]):
                    if stop.is_set():
                        break
                    slow.send(bytes([byte]))
                    sent.append(count)
                    stop.wait(0.2)
                if not slow.quiet_for(0.05):
                    problems.append(f"the slow connection got {bytes(slow.buf[:200])!r}")
        except OSError as exc:
            problems.append(repr(exc))

    thread = threading.Thread(target=dribble)
    thread.start()
    took = []
    try:
        time.sleep(0.5)  # the slow request has started
        for _ in range(8):
            started = time.monotonic()
            response = _one(served, PREDICT)
            took.append(time.monotonic() - started)
            assert (response.status, _predictions(response)) == (200, [CLASSIC])
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert len(sent) >= 10, "the slow client stopped dribbling before the others were done"
    assert problems == []
    assert max(took) < 1.0, [round(t, 3) for t in took]


# -- max_requests ----------------------------------------------------------------------------

MAX_REQUESTS = 20


def test_max_requests_replaces_the_worker_without_losing_a_request(
    worker: str, tmp_path: Path
) -> None:
    server = _gunicorn(
        tmp_path / "s", worker, workers=1, options=["--max-requests", str(MAX_REQUESTS)]
    )
    try:
        server.start()
        first = server.worker_pids()
        answers = [_one(server, PREDICT, timeout=20.0) for _ in range(3 * MAX_REQUESTS)]
        ids = {a.header("X-Request-ID") for a in answers}
        access: list[dict[str, Any]] = []
        last: set[int] = set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.1)  # the access-log lines reach the file, the last worker is up
            access = [line for line in server.log_lines() if line.get("logger") == "neuron.access"]
            last = server.worker_pids()
            if ids <= {line.get("request_id") for line in access} and len(last) == 1:
                break
        log = server.log()
    finally:
        server.stop()
    assert [a.status for a in answers] == [200] * len(answers)
    assert all(_predictions(a) == [CLASSIC] for a in answers)
    assert ids <= {line.get("request_id") for line in access}, "answers missing from the log"
    per_worker = Counter(int(line["pid"]) for line in access)  # /readyz's included
    assert len(per_worker) >= 3, per_worker
    # gthread may serve one past the limit: a connection accepted in the same turn of its
    # loop as the request that reached the limit is still served (21, 21, 19 seen).
    assert max(per_worker.values()) <= MAX_REQUESTS + 1, per_worker
    assert len(first) == len(last) == 1 and first != last
    assert "Traceback" not in log


# -- graceful stop ---------------------------------------------------------------------------

SLOW_RETRAIN = (
    b'{"inputs": [[0, 0, 1], [1, 1, 1], [1, 0, 1], [0, 1, 1]], "targets": [0, 1, 1, 0], '
    b'"iterations": 300000}'
)  # 2.5 to 4 s of training on a 2-core machine


def _connect(port: int) -> Conn | None:
    """A new connection, or None if the server refuses it."""
    try:
        return Conn(port, timeout=10)
    except ConnectionRefusedError:
        return None


def test_sigterm_lets_a_request_in_flight_finish_and_takes_no_new_one(
    worker: str, tmp_path: Path
) -> None:
    """SIGTERM to the master while a retrain trains: the retrain is answered, a connection
    opened after the signal is never served (refused, or closed without a byte: gthread keeps
    its listening socket open until its last request is done, so the kernel still completes
    the handshake), and once the server is gone connections are refused."""
    server = _gunicorn(tmp_path / "s", worker)
    late: Conn | None = None
    try:
        server.start()
        assert server.proc is not None
        retrain = request("POST", "/admin/retrain", SLOW_RETRAIN, {**JSON, "Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        with Conn(server.port, timeout=30) as conn:
            conn.send(retrain)
            sent = time.monotonic()
            assert conn.quiet_for(0.5), "the retrain answered at once"
            os.kill(server.proc.pid, signal.SIGTERM)
            time.sleep(0.3)  # the master and its workers have the signal
            late = _connect(server.port)
            late_after = time.monotonic() - sent
            if late is not None:
                late.send(HEALTHZ)
            interim, response = conn.final_response(timeout=30)
            # gthread decides keep-alive as a request starts, so this answer may announce it;
            # a stopping worker keeps the idle connection only briefly (gthread: 2 s), not for
            # the whole keepalive timeout, in case a request was already on its way.
            closed_after = conn.closed_within(10)
        unanswered = late.rest(10) if late is not None else b""
        exit_code = server.proc.wait(timeout=40)
        refused_at_exit = _connect(server.port) is None
    finally:
        if late is not None:
            late.close()
        server.stop()
    assert (interim, response.status) == ([], 200), response
    answer = _json(response)
    assert answer["model_version"] == 2
    assert answer["duration_seconds"] > late_after, "trained out before the late connection"
    assert closed_after < 3, f"the connection stayed open {closed_after:.1f} s after its answer"
    assert unanswered == b"", f"a connection opened after SIGTERM was served: {unanswered[:200]!r}"
    assert refused_at_exit
    assert exit_code == 0
    assert "Traceback" not in server.log()


# -- last: the shared server is still well -------------------------------------------------


def test_after_all_of_it_the_server_answers_and_logged_no_traceback(
    served: Gunicorn, worker: str
) -> None:
    response = _one(served, HEALTHZ)
    assert response.status == 200 and _json(response)["status"] == "ok"
    assert served.worker_pids() == _STARTED_WITH[worker], "a worker died or was replaced"
    statuses = Counter(
        int(line["status"]) for line in served.log_lines() if line.get("msg") == "request"
    )
    assert not [s for s in statuses if s >= 500], statuses
    assert "Traceback" not in served.log()
