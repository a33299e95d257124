"""One request through the WSGI app: its environ from parsed HTTP, its answer as bytes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson

from ..errors import ServiceError

log = logging.getLogger("service.server")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Headers = list[tuple[str, str]]
# Ours to frame: the app's own values for these would contradict the bytes we send.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})
NO_BODY_STATUS = (b"1", b"204", b"304")


class Dated:
    """The Date header's value, set once a second by the worker's tick, not per request."""

    value = "Thu, 01 Jan 1970 00:00:00 GMT"


def base_environ(server: tuple[str, int], peer: Any) -> dict[str, Any]:
    """The keys every request on one connection shares."""
    host, port = (peer[0], peer[1]) if isinstance(peer, tuple) else (str(peer or ""), 0)
    return {
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "REMOTE_ADDR": host,
        "REMOTE_PORT": str(port),
        "SCRIPT_NAME": "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        # The body ends where its framing says, chunked or not: werkzeug may read to EOF.
        "wsgi.input_terminated": True,
    }


def environ_for(
    base: dict[str, Any], method: str, url: bytes, version: str, headers: list[tuple[bytes, bytes]]
) -> dict[str, Any]:
    """PEP 3333's environ: the path percent-decoded to latin-1, headers as HTTP_*."""
    target, _, query = url.partition(b"?")
    target = target.partition(b"#")[0]
    if not target.startswith(b"/"):  # absolute-form (http://host/path) or '*'
        _, sep, rest = target.partition(b"://")
        target = b"/" + rest.partition(b"/")[2] if sep else b""
    path = unquote_to_bytes(target) if b"%" in target else target
    environ = base.copy()
    environ["REQUEST_METHOD"] = method
    environ["RAW_URI"] = url.decode("latin-1")
    environ["PATH_INFO"] = path.decode("latin-1")
    environ["QUERY_STRING"] = query.partition(b"#")[0].decode("latin-1")
    environ["SERVER_PROTOCOL"] = f"HTTP/{version}"
    for name, value in headers:
        key = _KEYS.get(name) or _environ_key(name)
        text = value.decode("latin-1")
        environ[key] = f"{environ[key]},{text}" if key in environ else text
    return environ


_KEYS: dict[bytes, str] = {}  # header name as sent -> its environ key; the first few hundred
_MAX_KEYS = 512  # names a client makes up are translated each time once this is full


def _environ_key(name: bytes) -> str:
    key = name.decode("latin-1").upper().replace("-", "_")
    if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        key = "HTTP_" + key
    if len(_KEYS) < _MAX_KEYS:
        _KEYS[name] = key
    return key


def call_app(app: WsgiApp, environ: dict[str, Any]) -> tuple[str, Headers, bytes]:
    """Run the app to its end: (status line text, headers, the whole body)."""
    started: list[Any] = []
    chunks: list[bytes] = []

    def start_response(status: str, headers: Headers, exc_info: Any = None) -> Any:
        if exc_info is not None and started and chunks:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [status, headers]
        return chunks.append

    result = app(environ, start_response)
    try:
        for chunk in result:
            if chunk:
                chunks.append(chunk)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    if not started:
        raise RuntimeError("the WSGI app returned without calling start_response")
    return started[0], started[1], b"".join(chunks)


def answer(
    status: str, headers: Headers, body: bytes, keep_alive: bool, version: str, head_only: bool
) -> bytes:
    """The response's bytes, framed by a Content-Length of our own."""
    lines = [f"HTTP/1.1 {status}\r\n"]
    declared = None
    for name, value in headers:
        lowered = name.lower()
        if lowered in HOP_BY_HOP:
            if lowered == "content-length":
                declared = value
            continue
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            raise ValueError(f"the response header {name!r} holds a line break")
        lines.append(f"{name}: {value}\r\n")
    bare = status.encode("latin-1").startswith(NO_BODY_STATUS)
    if head_only:  # what GET would have sent; the app (Flask) says it, else nothing is known
        lines.append(f"Content-Length: {declared}\r\n" if declared is not None else "")
        body = b""
    elif not bare:
        lines.append(f"Content-Length: {len(body)}\r\n")
    lines.append(f"Date: {Dated.value}\r\n")
    if not keep_alive:
        lines.append("Connection: close\r\n")
    elif version == "1.0":
        lines.append("Connection: keep-alive\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1") + (b"" if bare else body)


def refusal(error: ServiceError) -> bytes:
    """A request the server layer refuses before the app sees it: the JSON envelope, closed."""
    body = orjson.dumps(error.envelope())
    headers = [
        ("Content-Type", "application/json"),
        ("X-Content-Type-Options", "nosniff"),
        ("Cache-Control", "no-store"),
    ]
    return answer(f"{error.status} {_REASONS[error.status]}", headers, body, False, "1.1", False)


def failure(exc: BaseException) -> bytes:
    """The app itself raised (its error handlers should not let it): a 500 envelope."""
    log.error("the WSGI app raised", exc_info=exc)
    return refusal(ServiceError("internal server error"))


_REASONS = {
    400: "Bad Request",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
