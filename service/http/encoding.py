"""Content-Encoding: gzip and deflate request bodies, decoded before any reader; gzip answers.

A WSGI wrapper around the lanes and Flask, so every body reader (JSON, the numbers-only
fast path, CSV, V2 JSON and binary) gets the decoded bytes and a Content-Length that says how
many there are. Decoding streams: the compressed body is read in chunks and inflated with
zlib's ``max_length``, so a bomb is refused (413) as soon as its output passes the body limit,
never inflated whole. Answers are compressed with gzip when the request's Accept-Encoding
takes it and they are big enough to gain; a request without that header passes through
untouched, so the plain single-row path pays one dictionary lookup.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, BinaryIO

from ..errors import MalformedEncoding, PayloadTooLarge, ServiceError, UnsupportedMediaType
from .web import ENDPOINT_KEY, keep_endpoint

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

ACCEPTED = ("gzip", "deflate")
# Past its first MiB, a body may not decode to more than this many bytes per compressed byte.
# Real data compresses a few times (random rows as JSON: about 2.5, tests/reliability's
# cost-growth bodies); repeated filler and bombs go to gzip's limit of about 1,030.
MAX_RATIO = 100
RATIO_GRACE_BYTES = 1024 * 1024
# Answers below this stay plain: one TCP segment either way, and the single-row path is here.
MIN_COMPRESSED_BYTES = 1400
GZIP_LEVEL = 1  # the fastest; make bench reports a 10,000-row answer's time and bytes with it
REFUSED_ENDPOINT = "undecodable body"  # the metrics label of a body refused here
_CHUNK = 64 * 1024
_COMPRESSIBLE = ("application/json", "application/octet-stream", "text/")

Refusal = Callable[["WSGIEnvironment", ServiceError], tuple[int, bytes]]


class BodyEncoding:
    """Decodes gzip and deflate request bodies; gzips big answers for clients that ask."""

    def __init__(
        self, app: WSGIApplication, max_body: int, refusal: Refusal, raw: str | None = None
    ) -> None:
        self.app = app
        self._max_body = max_body
        self._refusal = refusal  # the error body in the envelope of the request's API
        self._raw = raw  # a path prefix whose handlers stream and decode their bodies themselves

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        coding = environ.get("HTTP_CONTENT_ENCODING")
        if coding is not None and not _passes_raw(environ, self._raw):
            try:
                _decode(environ, coding, self._max_body)
            except ServiceError as error:
                # Unread bytes would reach the client as a reset that can swallow the answer:
                # read what is left of a body within the limit; close after a longer one.
                drained = _drain(environ["wsgi.input"], self._max_body, environ)
                return self._refuse(environ, error, start_response, drained)
        accepted = environ.get("HTTP_ACCEPT_ENCODING")
        if accepted is not None and _takes_gzip(accepted):
            return _gzipped(self.app, environ, start_response)
        return self.app(environ, start_response)

    def _refuse(
        self,
        environ: WSGIEnvironment,
        error: ServiceError,
        start_response: StartResponse,
        drained: bool,
    ) -> list[bytes]:
        environ[ENDPOINT_KEY] = REFUSED_ENDPOINT
        status, body = self._refusal(environ, error)
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            *error.headers.items(),
        ]
        if not drained:  # the body's end was never read: this connection carries no more
            headers.append(("Connection", "close"))
        start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
        return [body]


_REASONS = {400: "Bad Request", 413: "Request Entity Too Large", 415: "Unsupported Media Type"}


def _passes_raw(environ: WSGIEnvironment, prefix: str | None) -> bool:
    return prefix is not None and environ.get("PATH_INFO", "").startswith(prefix)


def _drain(stream: BinaryIO, max_body: int, environ: WSGIEnvironment) -> bool:
    """Read and drop the rest of a body within the limit; whether its end was reached."""
    declared = environ.get("CONTENT_LENGTH") or ""
    if declared.isascii() and declared.isdigit() and int(declared) > max_body:
        return False  # refused by its length: reading it would be the sender's win
    left = max_body
    while left > 0:
        chunk = stream.read(min(_CHUNK, left))
        if not chunk:
            return True
        left -= len(chunk)
    return not stream.read(1)


def _decode(environ: WSGIEnvironment, header: str, max_body: int) -> None:
    """Replace the body by its decoding, in place in ``environ``; ServiceError if it cannot be."""
    coding = header.strip().lower()
    if coding in ("", "identity"):
        del environ["HTTP_CONTENT_ENCODING"]
        return
    if coding not in ACCEPTED:
        raise UnsupportedMediaType(
            f"Content-Encoding {header[:40]!r} is not accepted: send the body as it is, or "
            f"with one of {', '.join(ACCEPTED)}"
        )
    declared = environ.get("CONTENT_LENGTH") or ""
    length = int(declared) if declared.isascii() and declared.isdigit() else None
    if not length and "HTTP_TRANSFER_ENCODING" not in environ:  # no body: nothing to decode
        del environ["HTTP_CONTENT_ENCODING"]
        return
    if length is not None and length > max_body:
        raise PayloadTooLarge(f"the body is over the limit of {max_body} bytes")
    decoded = _inflate(environ["wsgi.input"], length, coding, max_body)
    environ["wsgi.input"] = io.BytesIO(decoded)
    environ["CONTENT_LENGTH"] = str(len(decoded))
    del environ["HTTP_CONTENT_ENCODING"]
    environ.pop("HTTP_TRANSFER_ENCODING", None)  # read whole: its length is known now


def _inflate(stream: BinaryIO, length: int | None, coding: str, max_body: int) -> bytes:
    """The decoded body, read ``length`` bytes (None: to the end) in chunks."""
    inflater: Any = None
    out = bytearray()
    read = 0
    while length is None or read < length:
        chunk = stream.read(_CHUNK if length is None else min(_CHUNK, length - read))
        if not chunk:
            break
        read += len(chunk)
        if read > max_body:  # chunked: no Content-Length said so up front
            raise PayloadTooLarge(f"the body is over the limit of {max_body} bytes")
        while chunk:
            if inflater is None:
                inflater = _inflater(coding, chunk)
            chunk = _feed(inflater, chunk, out, max_body, coding)
            if inflater.eof:
                inflater = _next_member(inflater, chunk, coding)
            if len(out) > RATIO_GRACE_BYTES and len(out) > MAX_RATIO * read:
                raise PayloadTooLarge(
                    f"the body decodes to over {MAX_RATIO} bytes per compressed byte; "
                    "send it uncompressed"
                )
    if length is not None and read < length:
        raise MalformedEncoding(f"the body ended after {read} of its {length} bytes")
    if inflater is None or not inflater.eof:
        raise MalformedEncoding(f"the body is not valid {coding}: the stream ends before its end")
    return bytes(out)


def _inflater(coding: str, first: bytes) -> Any:
    """gzip's decoder, or deflate's: zlib-wrapped as the RFC says, or raw as some clients send."""
    if coding == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    zlib_header = len(first) >= 2 and first[0] & 0x0F == 8 and (first[0] * 256 + first[1]) % 31 == 0
    return zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)


def _feed(inflater: Any, data: bytes, out: bytearray, max_body: int, coding: str) -> bytes:
    """Inflate ``data`` into ``out``, never past max_body + 1 bytes; the input left over."""
    while data:
        try:
            piece = inflater.decompress(data, max_body + 1 - len(out))
        except zlib.error as exc:
            raise MalformedEncoding(f"the body is not valid {coding}: {exc}") from None
        out += piece
        if len(out) > max_body:
            raise PayloadTooLarge(
                f"the body decodes to more than the limit of {max_body} bytes "
                "(NEURON_MAX_BODY_BYTES)"
            )
        if inflater.eof:
            return bytes(inflater.unused_data)
        data = inflater.unconsumed_tail
    return b""


def _next_member(inflater: Any, rest: bytes, coding: str) -> Any:
    """After a stream's end: gzip may hold further members (RFC 1952); anything else is junk."""
    if not rest:
        return inflater
    if coding != "gzip":
        raise MalformedEncoding(f"the body is not valid {coding}: bytes follow the stream's end")
    return zlib.decompressobj(16 + zlib.MAX_WBITS)


def _takes_gzip(header: str) -> bool:
    """Whether Accept-Encoding takes gzip (or *): named without q=0."""
    for item in header.split(","):
        name, _, params = item.partition(";")
        if name.strip().lower() not in ("gzip", "*"):
            continue
        q = params.strip().lower().removeprefix("q=").strip()
        try:
            return not params.strip() or float(q) > 0
        except ValueError:
            return False
    return False


def _gzipped(
    app: WSGIApplication, environ: WSGIEnvironment, start_response: StartResponse
) -> Iterable[bytes]:
    """The app's answer, gzipped when it is big enough and of a type worth compressing."""
    held: list[Any] = []

    def hold(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        keep_endpoint(environ)  # while Flask's request is still there to say it
        held[:] = [status, headers, exc_info]
        return lambda data: None  # write(): nothing here calls it

    body = app(environ, hold)
    status, headers, exc_info = held
    # Only a whole 200 body: a HEAD's is empty (its length the GET's), a 206 is part of one.
    if not (status.startswith("200") and environ.get("REQUEST_METHOD") != "HEAD") or (
        not _worth_compressing(headers)
    ):
        start_response(status, headers, exc_info)
        return body
    try:
        data = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    compressed = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    packed = compressed.compress(data) + compressed.flush()
    kept = [(k, v) for k, v in headers if k.lower() not in ("content-length", "vary")]
    vary = ", ".join(v for k, v in headers if k.lower() == "vary")
    kept += [
        ("Content-Encoding", "gzip"),
        ("Content-Length", str(len(packed))),
        ("Vary", f"{vary}, Accept-Encoding" if vary else "Accept-Encoding"),
    ]
    start_response(status, kept, exc_info)
    return [packed]


def _worth_compressing(headers: list[tuple[str, str]]) -> bool:
    length = type_ = None
    for name, value in headers:
        lower = name.lower()
        if lower == "content-length":
            length = value
        elif lower == "content-type":
            type_ = value
        elif lower == "content-encoding":
            return False
    return (
        length is not None
        and length.isdigit()
        and int(length) >= MIN_COMPRESSED_BYTES
        and type_ is not None
        and type_.startswith(_COMPRESSIBLE)
    )
