"""The loop worker's parts without gunicorn: StreamBody's flow control, exchange's environ and
framing, and one HttpConnection on a real uvloop server (raw sockets: tests/integration/
test_http_behaviour.py runs every HTTP behaviour through gunicorn on both worker classes)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import uvloop

from service.server import exchange
from service.server.body import HIGH_WATER, LOW_WATER, StreamBody
from service.server.deadline import Deadline
from service.server.exchange import answer, base_environ, environ_for
from service.server.h1 import HttpConnection
from service.server.host import Lanes, Limits

MiB = 1 << 20


def test_a_reader_wanting_more_than_is_buffered_resumes_a_paused_body() -> None:
    """The deadlock once seen: paused at 1.3 MiB, a 1 MiB read leaves 0.3 MiB (above the low
    water mark), and the next 1 MiB read must resume the socket rather than wait on it."""
    calls: list[bool] = []
    body = StreamBody(calls.append)
    body.feed(b"a" * (HIGH_WATER + 300 * 1024))
    assert calls == [True]
    assert len(body.read(MiB)) == MiB
    assert HIGH_WATER + 300 * 1024 - MiB > LOW_WATER and calls == [True]
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(body.read(MiB)))
    reader.start()
    deadline = time.monotonic() + 5
    while calls == [True] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls == [True, False]
    body.feed(b"b" * MiB)
    reader.join(5)
    assert len(got[0]) == MiB


def test_a_body_reads_lines_and_ends_short_when_the_client_stops() -> None:
    body = StreamBody(lambda pause: None)
    body.feed(b"a,b\n1,2\n3")
    body.end()
    assert list(body) == [b"a,b\n", b"1,2\n", b"3"]
    assert body.read(10) == b""


def test_a_failed_body_raises_an_oserror_werkzeug_turns_into_a_400() -> None:
    body = StreamBody(lambda pause: None)
    body.fail(ConnectionResetError("gone"))
    with pytest.raises(OSError, match="gone"):
        body.read(1)


@pytest.mark.parametrize(
    ("url", "path", "query"),
    [
        (b"/predict", "/predict", ""),
        (b"/a%20b/%E2%82%AC?x=%20", "/a b/\xe2\x82\xac", "x=%20"),  # PEP 3333: latin-1 of bytes
        (b"http://example.com/model?v=1", "/model", "v=1"),
        (b"http://example.com", "/", ""),
        (b"/p#frag", "/p", ""),
    ],
)
def test_the_environ_holds_pep_3333s_path_and_query(url: bytes, path: str, query: str) -> None:
    environ = environ_for(base_environ(("127.0.0.1", 80), ("10.0.0.1", 5)), "GET", url, "1.1", [])
    assert (environ["PATH_INFO"], environ["QUERY_STRING"]) == (path, query)
    assert environ["REMOTE_ADDR"] == "10.0.0.1" and environ["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_headers_become_http_keys_and_repeated_ones_are_joined() -> None:
    headers = [(b"Content-Type", b"text/csv"), (b"Accept", b"a"), (b"Accept", b"b")]
    environ = environ_for(base_environ(("h", 1), None), "POST", b"/", "1.1", headers)
    assert environ["CONTENT_TYPE"] == "text/csv" and environ["HTTP_ACCEPT"] == "a,b"


def test_header_names_made_up_by_a_client_still_translate_and_do_not_grow_the_cache() -> None:
    names = [f"X-Made-Up-{i}".encode() for i in range(2 * exchange._MAX_KEYS)]
    for name in names * 2:
        environ = environ_for(base_environ(("h", 1), None), "GET", b"/", "1.1", [(name, b"v")])
        assert environ["HTTP_" + name.decode().upper().replace("-", "_")] == "v"
    assert len(exchange._KEYS) <= exchange._MAX_KEYS


def test_an_answer_is_framed_by_our_length_and_never_split_by_a_header() -> None:
    wrong_length = [("Content-Length", "999"), ("Transfer-Encoding", "chunked")]
    sent = answer("200 OK", wrong_length, b"hello", True, "1.1", False)
    head, _, body = sent.partition(b"\r\n\r\n")
    assert body == b"hello" and b"Content-Length: 5" in head and b"chunked" not in head
    head_only = answer("200 OK", [("Content-Length", "5")], b"hello", True, "1.1", True)
    assert head_only.endswith(b"Content-Length: 5\r\nDate: " + head_only.split(b"Date: ")[1])
    assert head_only.endswith(b"\r\n\r\n")
    assert answer("204 No Content", [], b"", False, "1.1", False).endswith(b"close\r\n\r\n")
    with pytest.raises(ValueError, match="line break"):
        answer("200 OK", [("X-A", "a\r\nSet-Cookie: x=1")], b"", True, "1.1", False)


class _Host:
    """The Host protocol with a plain app, on a uvloop server of its own in a thread."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.wsgi, self.limits, self.lanes, self.serving = app, Limits(), Lanes(), True
        self.loop = uvloop.new_event_loop()
        self._pool = ThreadPoolExecutor(2)
        self.port = 0
        self.open: set[Any] = set()

    def run_in_thread(self, work: Callable[[], None]) -> None:
        self._pool.submit(work)

    def opened(self, conn: Any) -> None:
        self.open.add(conn)

    def closed(self, conn: Any) -> None:
        self.open.discard(conn)

    def answered(self) -> None: ...

    def serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            self.loop.create_server(lambda: HttpConnection(self), "127.0.0.1", 0)
        )
        self.port = server.sockets[0].getsockname()[1]
        self.loop.run_forever()
        server.close()
        self.loop.run_until_complete(server.wait_closed())
        self.loop.close()
        self._pool.shutdown()


def _count_body(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """Reads the body a MiB at a time, as the job spool does, and answers its length."""
    stream, total = environ["wsgi.input"], 0
    while chunk := stream.read(MiB):
        total += len(chunk)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(total).encode()]


@pytest.fixture
def counting_server() -> Iterator[_Host]:
    host = _Host(_count_body)
    serving = threading.Thread(target=host.serve, daemon=True)
    serving.start()
    deadline = time.monotonic() + 5
    while not host.port and time.monotonic() < deadline:
        time.sleep(0.01)
    yield host
    deadline = time.monotonic() + 5  # the client closed: the server's side follows
    while host.open and time.monotonic() < deadline:
        time.sleep(0.01)
    host.loop.call_soon_threadsafe(host.loop.stop)
    serving.join(10)


@pytest.mark.parametrize("write", [64 * 1024, 300 * 1024])
def test_a_big_body_streams_to_the_app_through_pauses(counting_server: _Host, write: int) -> None:
    body = b"x" * (7 * MiB + 12345)
    head = f"POST /admin/x HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", counting_server.port), timeout=10) as sock:
        sock.sendall(head + body[:write])
        for start in range(write, len(body), write):
            sock.sendall(body[start : start + write])
        answer_bytes = b""
        while not answer_bytes.endswith(str(len(body)).encode()):
            chunk = sock.recv(65536)
            assert chunk, answer_bytes
            answer_bytes += chunk
    assert answer_bytes.startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_deadline_fires_once_at_the_time_last_armed_for_and_never_when_disarmed() -> None:
    loop = uvloop.new_event_loop()
    fired: list[float] = []
    deadline = Deadline(loop, lambda: fired.append(loop.time()))

    async def scenario() -> None:
        start = loop.time()
        deadline.arm(0.2)
        for _ in range(10):  # a request every 20 ms keeps pushing it back
            await asyncio.sleep(0.02)
            deadline.arm(0.2)
        last = loop.time()
        await asyncio.sleep(0.4)
        assert len(fired) == 1 and fired[0] >= last + 0.2 - 0.005 > start + 0.3, fired
        deadline.arm(10)
        deadline.arm(0.02)  # sooner than the pending timer: it is replaced
        await asyncio.sleep(0.1)
        assert len(fired) == 2, fired
        deadline.arm(0.02)
        deadline.disarm()
        await asyncio.sleep(0.06)
        deadline.arm(0.02)
        deadline.cancel()
        await asyncio.sleep(0.06)
        assert len(fired) == 2, fired

    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
