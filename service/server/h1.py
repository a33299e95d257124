"""HttpConnection: one client's HTTP/1.1 connection on the worker's event loop.

httptools (llhttp, in C) parses; it refuses ambiguous framing itself (Content-Length with
Transfer-Encoding, two Content-Lengths, bad chunk sizes). Requests are answered one at a time
in arrival order, so pipelined requests get their answers in order. A small request runs the
app inline on the loop; a long one (see Lanes) runs in the worker's thread pool, its body
streamed to it, and the loop keeps serving every other connection meanwhile.
"""

from __future__ import annotations

import asyncio
import io
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httptools

from ..errors import (
    HeadersTooLarge,
    HttpVersionNotSupported,
    MalformedHttp,
    NotImplementedHttp,
    PayloadTooLarge,
    ServiceError,
    UriTooLong,
)
from .body import StreamBody
from .deadline import Deadline
from .exchange import answer, base_environ, call_app, environ_for, failure, refusal
from .host import Host

SHUTDOWN_GRACE_SECONDS = 1.0  # an idle connection of a stopping worker: a request on its way
# Closing with unread bytes makes the kernel send a reset, which can destroy the answer still on
# its way to the client (a 413 while the body is being sent). So the server closes its side
# first and reads on, discarding, until the client closes: at most this long after its last
# byte, and at most LINGER_LIMIT_SECONDS in all.
LINGER_SECONDS = 2.0
LINGER_LIMIT_SECONDS = 30.0


@dataclass
class _Request:
    method: str
    url: bytes
    version: str
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    expects_continue: bool
    inline: bool
    chunks: list[bytes] = field(default_factory=list)
    stream: StreamBody | None = None
    complete: bool = False


class MalformedBody(OSError):
    """What reading a body raises once its framing broke (werkzeug answers OSError with 400)."""


def _parse_error(error: Exception) -> ServiceError:
    """llhttp's refusal as ours: a Content-Length past 2**64 is still one that is too large."""
    if "Content-Length overflow" in str(error):
        return PayloadTooLarge("the request's Content-Length is too large")
    return MalformedHttp(f"malformed HTTP request: {error}")


class HttpConnection(asyncio.Protocol):
    """Parses requests, answers them in order, times out idle and slow connections."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._base: dict[str, Any] = {}
        self._queue: deque[_Request] = deque()  # parsed (head at least), not yet answered
        self._receiving: _Request | None = None  # the request whose body is arriving
        self._in_head = False
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0  # bytes received while the current head was arriving
        self._busy = False  # the request at the front of the queue is in a thread
        self._closing = False  # answer nothing more; close once nothing is in flight
        self._reading = True  # false: parse nothing more; answer what is queued, then close
        self._last_word: bytes | None = None  # written after the queued answers, before closing
        self._header_count = 0
        self._paused: set[str] = set()
        self._deadline = Deadline(host.loop, self._expired)  # head, keep-alive, linger
        self._linger_until = 0.0  # set once our side is closed and the client's is drained
        self._client_done = False  # the client closed its side: nothing more to drain

    # -- asyncio ------------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        self._base = base_environ(
            transport.get_extra_info("sockname"), transport.get_extra_info("peername")
        )
        self._host.opened(self)
        self._deadline.arm(self._host.limits.keepalive_seconds)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing, self._reading = True, False
        self._deadline.cancel()
        for request in self._queue:
            if request.stream is not None:
                request.stream.fail(ConnectionResetError("the client closed the connection"))
        self._host.closed(self)

    def eof_received(self) -> bool:
        """The client closed its side: answer what it sent (a cut-short body included)."""
        if self._linger_until:
            return False  # both sides are closed now
        self._client_done = True
        request = self._receiving
        if request is not None:  # the app sees fewer bytes than declared and says so
            request.complete, request.keep_alive = True, False
            if request.stream is not None:
                request.stream.end()
        self._stop_reading(None, None)
        self._pump()
        return True  # keep the transport: the answers still go out; _pump closes it

    def data_received(self, data: bytes) -> None:
        if not self._reading:
            if self._linger_until:
                self._deadline.arm(min(LINGER_SECONDS, self._linger_until - self._host.loop.time()))
            return
        counting = self._in_head or self._receiving is None
        if counting:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
            if self._in_head and self._head_bytes > self._host.limits.head_bytes:
                raise HeadersTooLarge("the request's headers are too large")
        except ServiceError as error:
            self._refuse(error)
        except httptools.HttpParserUpgrade:  # no protocol upgrades: answer as is, then close
            self._stop_reading(None, None)
        except httptools.HttpParserCallbackError as error:
            cause = error.__context__
            if not isinstance(cause, ServiceError):
                raise
            self._refuse(cause)
        except httptools.HttpParserError as error:
            self._refuse(_parse_error(error))
        self._pump()

    # -- httptools' callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url, self._headers, self._in_head, self._header_count = b"", [], True, 0
        self._deadline.arm(self._host.limits.head_seconds)

    def on_url(self, url: bytes) -> None:
        self._url += url
        # gunicorn's limit is on the whole line: METHOD SP URL SP HTTP/1.1
        line = len(self._parser.get_method()) + len(self._url) + 10
        if line > self._host.limits.request_line:
            raise UriTooLong("the request line is too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # a chunked body's trailer: not part of the request's headers
        self._header_count += 1
        if self._header_count > self._host.limits.header_count:
            raise HeadersTooLarge("the request has too many headers")
        if len(name) + len(value) + 4 > self._host.limits.header_field:  # "name: value\r\n"
            raise HeadersTooLarge("a request header is too large")
        if b"_" not in name:  # gunicorn's header_map=drop: X_A would pass for X-A
            self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes = False, 0
        request = self._request()
        if not request.inline:
            request.stream = StreamBody(self._threadsafe_pause, self._continue_owed(request))
            # the stream times out a stalled body; the app may not even read it
            self._deadline.disarm()
        self._receiving = request
        self._queue.append(request)
        if request.inline and request.expects_continue and self._is_next(request):
            self._send_continue(request)

    def on_body(self, data: bytes) -> None:
        request = self._receiving
        assert request is not None
        if request.stream is not None:
            request.stream.feed(data)
        else:
            request.chunks.append(data)

    def on_message_complete(self) -> None:
        request = self._receiving
        assert request is not None
        request.complete = True
        if request.stream is not None:
            request.stream.end()
        self._receiving = None
        self._deadline.disarm()
        if not self._is_next(request):
            self._pause("pipelined", True)  # one waits its turn: read on once it is answered

    def _request(self) -> _Request:
        """The request whose head just ended; refuses framing this server does not take."""
        parser = self._parser
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise HttpVersionNotSupported(f"HTTP/{version} is not supported")
        length: int | None = 0
        expects = False
        for name, value in self._headers:
            lowered = name.lower()
            if lowered == b"content-length":
                length = int(value)
            elif lowered == b"transfer-encoding":
                if version == "1.0":  # no transfer codings in HTTP/1.0: framing it cannot mean
                    raise MalformedHttp("Transfer-Encoding in an HTTP/1.0 request")
                if value.strip().lower() != b"chunked":
                    raise NotImplementedHttp("only the chunked transfer coding is implemented")
                length = None
            elif lowered == b"expect":  # HTTP/1.0 has no 100 Continue (RFC 9110, 10.1.1)
                expects = value.strip().lower() == b"100-continue" and version == "1.1"
        return _Request(
            parser.get_method().decode("latin-1"),
            self._url,
            version,
            self._headers,
            parser.should_keep_alive(),
            expects and length != 0,
            self._host.lanes.inline(self._url.partition(b"?")[0], length),
        )

    # -- answering ----------------------------------------------------------------------------

    def _is_next(self, request: _Request) -> bool:
        return not self._busy and bool(self._queue) and self._queue[0] is request

    def _pump(self) -> None:
        """Answer queued requests in order until one must wait (its body, or a thread)."""
        while self._queue and not self._busy and not self._closing:
            request = self._queue[0]
            if request.stream is not None:
                self._busy = True
                self._host.run_in_thread(partial(self._in_thread, request))
                return
            if not request.complete:
                self._send_continue(request)  # owed now that it is next, if it asked
                return
            self._queue.popleft()
            self._answer(*self._run(request))
        if self._busy:
            return
        if self._closing or (not self._reading and not self._queue):
            self._finish()
        elif not self._queue:
            self._pause("pipelined", False)
            if self._receiving is None and not self._in_head:
                idle = self._host.limits.keepalive_seconds
                self._deadline.arm(idle if self._host.serving else SHUTDOWN_GRACE_SECONDS)

    def _run(self, request: _Request) -> tuple[bytes, bool]:
        """The app's answer to ``request`` and whether the connection stays open after it."""
        environ = environ_for(
            self._base, request.method, request.url, request.version, request.headers
        )
        environ["wsgi.input"] = request.stream or io.BytesIO(b"".join(request.chunks))
        try:
            status, headers, body = call_app(self._host.wsgi, environ)
            # Decided after the app: a worker may have begun to stop meanwhile. A body the app
            # answered before it ended must not be read as the next request.
            keep = request.keep_alive and self._host.serving
            if request.stream is not None and not request.stream.ended:
                keep = False
            head_only = request.method == "HEAD"
            return answer(status, headers, body, keep, request.version, head_only), keep
        except Exception as exc:  # the app's handlers answer its errors: this is a last resort
            return failure(exc), False

    def _in_thread(self, request: _Request) -> None:
        response, keep = self._run(request)
        self._host.loop.call_soon_threadsafe(self._thread_done, request, response, keep)

    def _thread_done(self, request: _Request, response: bytes, keep: bool) -> None:
        self._busy = False
        if self._queue and self._queue[0] is request:
            self._queue.popleft()
        self._answer(response, keep)
        self._pump()

    def _answer(self, response: bytes, keep: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(response)
        self._host.answered()
        if not keep:
            self._closing = True

    def _refuse(self, error: ServiceError) -> None:
        """Bytes that are no request: answer the requests before them, then this, then close."""
        self._stop_reading(refusal(error), MalformedBody(error.message))

    def _stop_reading(self, last_word: bytes | None, cut: OSError | None) -> None:
        """Parse nothing more. A request cut off mid-body never reaches the app; one already
        in a thread sees ``cut`` from its body's read and answers for itself."""
        self._reading = False
        self._pause("done", True)
        request = self._receiving
        if request is not None and not request.complete and request in self._queue:
            if request.stream is not None and self._queue[0] is request:
                if cut is not None:
                    request.stream.fail(cut)
                last_word = None  # the app answers it (a 400 from the body's failure)
            else:
                self._queue.remove(request)
        self._last_word = last_word
        self._receiving = None

    def _finish(self) -> None:
        """Nothing more will be answered: the last word, if any, then our side closes and
        the client's is read to its end (see LINGER_SECONDS)."""
        transport = self._transport
        if transport is None or transport.is_closing() or self._linger_until:
            return
        if self._last_word is not None and not self._closing:
            transport.write(self._last_word)
        self._reading, self._closing = False, True
        if self._client_done or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._linger_until = self._host.loop.time() + LINGER_LIMIT_SECONDS
        self._deadline.arm(LINGER_SECONDS)
        self._paused.clear()
        transport.resume_reading()

    def shutdown(self) -> None:
        """The worker stops: a connection with nothing in flight closes soon (a request on
        its way may still arrive and be answered, with Connection: close)."""
        if not self._queue and not self._busy and not self._in_head:
            self._deadline.arm(SHUTDOWN_GRACE_SECONDS)

    # -- flow and time ------------------------------------------------------------------------

    def _continue_owed(self, request: _Request) -> Any:
        if not request.expects_continue:
            return None
        return lambda: self._host.loop.call_soon_threadsafe(self._send_continue, request)

    def _send_continue(self, request: _Request) -> None:
        if request.expects_continue and self._transport is not None:
            request.expects_continue = False
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _threadsafe_pause(self, pause: bool) -> None:
        self._host.loop.call_soon_threadsafe(self._pause, "body", pause)

    def _pause(self, reason: str, pause: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        before = bool(self._paused)
        if pause:
            self._paused.add(reason)
        else:
            self._paused.discard(reason)
        if before != bool(self._paused):
            (transport.pause_reading if self._paused else transport.resume_reading)()

    def _expired(self) -> None:
        """Idle past keep-alive, or a head (or small body) that did not arrive in time."""
        if self._transport is not None and (self._linger_until or not self._busy):
            self._transport.close()
