"""HTTP/1.1 over a plain socket, for tests that assert on the bytes a server sends.

No HTTP library in between: requests go out exactly as written (pipelined, split, malformed),
and responses are framed here by the rules of RFC 9112 section 6.3 (no body for HEAD, 1xx, 204
and 304; else Content-Length, chunked, or up to the close). Every read has a deadline.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import orjson

HEAD_LIMIT = 64 * 1024  # a response head longer than this is a broken server, not a slow one


class Closed(Exception):
    """The server closed the connection before a whole response arrived."""


@dataclass
class Response:
    status_line: bytes
    headers: list[tuple[str, str]]
    body: bytes = b""
    raw_head: bytes = b""
    received_at: float = 0.0  # time.monotonic() when the whole response had arrived
    fields: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for name, value in self.headers:
            self.fields.setdefault(name.lower(), []).append(value)

    @property
    def version(self) -> bytes:
        return self.status_line.split(b" ", 1)[0]

    @property
    def status(self) -> int:
        return int(self.status_line.split(b" ", 2)[1])

    def header(self, name: str) -> str | None:
        """The field's value (repeated fields joined with ", "), None if absent."""
        values = self.fields.get(name.lower())
        return None if values is None else ", ".join(values)

    def json(self) -> object:
        return orjson.loads(self.body)

    @property
    def closes(self) -> bool:
        """Whether the response says the connection ends after it (RFC 9112 section 9.3)."""
        tokens = {t.strip().lower() for t in (self.header("Connection") or "").split(",")}
        if self.version == b"HTTP/1.0":
            return "keep-alive" not in tokens
        return "close" in tokens


class Conn:
    """One client connection to 127.0.0.1:port; ``timeout`` bounds every single wait."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_slowly(self, pieces: list[bytes], pause: float = 0.02) -> None:
        """Each piece in its own write, ``pause`` seconds apart (TCP_NODELAY: own segments)."""
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in pieces:
            self.sock.sendall(piece)
            time.sleep(pause)

    def _fill(self, deadline: float) -> None:
        """Read once more into the buffer; Closed at EOF, TimeoutError past the deadline."""
        if self.eof:
            raise Closed(bytes(self.buf[:300]))
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no more bytes in time; buffered: {bytes(self.buf[:300])!r}")
        self.sock.settimeout(min(left, self.timeout))
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            raise Closed(bytes(self.buf[:300]))
        self.buf += chunk

    def _take_until(self, marker: bytes, deadline: float, limit: int = HEAD_LIMIT) -> bytes:
        while (idx := self.buf.find(marker)) < 0:
            assert len(self.buf) <= limit, f"no {marker!r} in {limit} bytes"
            self._fill(deadline)
        out = bytes(self.buf[:idx])
        del self.buf[: idx + len(marker)]
        return out

    def _take(self, count: int, deadline: float) -> bytes:
        while len(self.buf) < count:
            self._fill(deadline)
        out = bytes(self.buf[:count])
        del self.buf[:count]
        return out

    def response(self, head: bool = False, timeout: float | None = None) -> Response:
        """The next response, 1xx included; ``head``: it answers a HEAD (no body follows)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        raw_head = self._take_until(b"\r\n\r\n", deadline)
        status_line, *lines = raw_head.split(b"\r\n")
        headers = []
        for line in lines:
            name, sep, value = line.partition(b":")
            assert sep and name and name == name.strip(), f"bad header line {line!r}"
            headers.append((name.decode("ascii"), value.strip(b" \t").decode("latin-1")))
        response = Response(status_line, headers, raw_head=raw_head)
        code = response.status
        if head or 100 <= code < 200 or code in (204, 304):
            pass
        elif "chunked" in (response.header("Transfer-Encoding") or "").lower():
            response.body = self._chunked(deadline)
        elif (length := response.header("Content-Length")) is not None:
            assert length.isdigit(), f"Content-Length {length!r}"
            response.body = self._take(int(length), deadline)
        else:
            response.body = self.rest(deadline - time.monotonic())
        response.received_at = time.monotonic()
        return response

    def final_response(self, timeout: float | None = None) -> tuple[list[Response], Response]:
        """The interim (1xx) responses, then the final one."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        interim = []
        while (response := self.response(timeout=deadline - time.monotonic())).status < 200:
            interim.append(response)
        return interim, response

    def _chunked(self, deadline: float) -> bytes:
        body = bytearray()
        for _ in range(100_000):
            size_line = self._take_until(b"\r\n", deadline, limit=1024)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:  # then trailer lines, if any, up to an empty line
                for _ in range(1000):
                    if self._take_until(b"\r\n", deadline) == b"":
                        return bytes(body)
                raise AssertionError("over 1000 trailer lines")
            body += self._take(size, deadline)
            assert self._take(2, deadline) == b"\r\n"
        raise AssertionError("over 100,000 chunks")

    def rest(self, timeout: float) -> bytes:
        """Every byte until the server closes; TimeoutError if it does not within ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            try:
                self._fill(deadline)
            except Closed:
                break
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def closed_within(self, timeout: float) -> float:
        """Seconds until the server closes the connection (no bytes may come before it)."""
        started = time.monotonic()
        extra = self.rest(timeout)
        assert extra == b"", f"bytes before the close: {extra[:300]!r}"
        return time.monotonic() - started

    def quiet_for(self, seconds: float) -> bool:
        """Whether nothing arrives (no byte, no close) for ``seconds``."""
        if self.buf or self.eof:
            return False
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return True
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
        self.buf += chunk
        return False


def request(
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    version: str = "HTTP/1.1",
) -> bytes:
    """A request's bytes: Host first, the given headers, Content-Length when there is a body."""
    lines = [f"{method} {path} {version}", "Host: 127.0.0.1"]
    given = dict(headers or {})
    if body is not None and not any(k.lower() == "transfer-encoding" for k in given):
        given.setdefault("Content-Length", str(len(body)))
    lines += [f"{name}: {value}" for name, value in given.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def chunked(pieces: list[bytes], extension: bytes = b"") -> bytes:
    """``pieces`` as a chunked body: a chunk each, the last chunk, no trailers."""
    out = b"".join(b"%x%s\r\n%s\r\n" % (len(p), extension, p) for p in pieces if p)
    return out + b"0\r\n\r\n"
