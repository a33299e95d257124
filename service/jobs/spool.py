"""Job bodies on disk: written as they arrive, read back decoded, a block at a time."""

from __future__ import annotations

import errno
import io
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..errors import InsufficientStorage, MalformedEncoding, PayloadTooLarge, StorageUnavailable

CHUNK = 1 << 20
ENCODINGS = ("gzip", "deflate")
BODY_SUFFIX = ".body"


def body_path(directory: Path, job_id: str) -> Path:
    return directory / f"{job_id}{BODY_SUFFIX}"


def spool(stream: IO[bytes], path: Path, limit: int) -> int:
    """Copy ``stream`` to ``path`` (complete, or not at all); the bytes written.

    PayloadTooLarge past ``limit`` (a chunked body has no Content-Length to refuse it by).
    """
    temp = path.with_name(f".tmp-{path.name}")
    written = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with temp.open("wb") as out:
            while chunk := stream.read(CHUNK):
                written += len(chunk)
                if written > limit:
                    raise PayloadTooLarge(f"the body is over the job limit of {limit} bytes")
                out.write(chunk)
        os.replace(temp, path)
    except OSError as exc:
        raise _storage_error(exc) from None
    finally:
        temp.unlink(missing_ok=True)
    return written


def open_body(
    path: Path, encoding: str | None, limit: int, read: Callable[[int], None]
) -> IO[bytes]:
    """The body as sent, decoded; ``read`` hears the stored bytes consumed so far."""
    raw: Any = _Counted(path.open("rb"), read)
    if encoding:
        raw = _Inflating(raw, encoding, limit)
    return io.BufferedReader(raw, CHUNK)


class _Counted(io.RawIOBase):
    def __init__(self, file: IO[bytes], read: Callable[[int], None]) -> None:
        self._file, self._read, self._count = file, read, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._file.readinto(buffer)  # type: ignore[attr-defined]
        self._count += n
        self._read(self._count)
        return int(n)

    def close(self) -> None:
        self._file.close()
        super().close()


class _Inflating(io.RawIOBase):
    """gzip (any number of members) or zlib-wrapped deflate, never past ``limit`` decoded."""

    def __init__(self, raw: IO[bytes], encoding: str, limit: int) -> None:
        self._raw, self._encoding, self._limit = raw, encoding, limit
        self._wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
        self._inflater: Any = zlib.decompressobj(self._wbits)
        self._pending, self._out, self._done = b"", 0, False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._done:
            if not self._pending:
                self._pending = self._raw.read(CHUNK)
                if not self._pending:
                    if not self._inflater.eof:
                        raise self._malformed("the body ends before its stream does")
                    self._done = True
                    break
            piece = self._inflate(len(view))
            if piece:
                view[: len(piece)] = piece
                return len(piece)
        return 0

    def _inflate(self, room: int) -> bytes:
        try:
            piece = self._inflater.decompress(self._pending, room)
        except zlib.error as exc:
            raise self._malformed(str(exc)) from None
        self._pending = self._inflater.unconsumed_tail
        if self._inflater.eof:
            self._pending = self._inflater.unused_data
            if self._pending and self._encoding != "gzip":
                raise self._malformed("bytes follow the stream's end")
            if self._pending:  # another gzip member
                self._inflater = zlib.decompressobj(self._wbits)
        self._out += len(piece)
        if self._out > self._limit:
            raise PayloadTooLarge(
                f"the body decodes to more than the job limit of {self._limit} bytes"
            )
        return bytes(piece)

    def _malformed(self, why: str) -> MalformedEncoding:
        return MalformedEncoding(f"the body is not valid {self._encoding}: {why}")

    def close(self) -> None:
        self._raw.close()
        super().close()


def _storage_error(exc: OSError) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return InsufficientStorage("the job directory is full: the body was not kept")
    return StorageUnavailable(f"the job directory is not writable: {exc.strerror}")
