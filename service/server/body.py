"""StreamBody: a request body arriving on the event loop, read by the app in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

HIGH_WATER = 1 << 20  # bytes buffered before the connection stops reading from its socket
LOW_WATER = 1 << 18  # ... and resumes once the app has read the buffer down to this
IDLE_SECONDS = 30.0  # a client that sends no byte of its body for this long is cut off


class BodyTimeout(OSError):
    """The client stopped sending its body."""


class StreamBody:
    """wsgi.input for a body the loop is still receiving: feed() on the loop, read() in a thread.

    ``pause(True/False)`` and ``on_first_read`` are called through the loop (the caller wraps
    them with call_soon_threadsafe); the first read is when `100 Continue` is owed.
    """

    def __init__(
        self, pause: Callable[[bool], None], on_first_read: Callable[[], None] | None = None
    ) -> None:
        self._cond = threading.Condition()
        self._buffer = bytearray()
        self._ended = False
        self._error: BaseException | None = None
        self._pause = pause
        self._paused = False
        self._on_first_read = on_first_read

    # -- the loop's side ---------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        with self._cond:
            self._buffer += data
            self._cond.notify()
            if len(self._buffer) > HIGH_WATER and not self._paused:
                self._paused = True
                self._pause(True)

    def end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify()

    def fail(self, error: BaseException) -> None:
        with self._cond:
            if not self._ended:
                self._error = error
            self._cond.notify()

    @property
    def ended(self) -> bool:
        return self._ended

    # -- the app's side ----------------------------------------------------------------------

    def _wait_for(self, enough: Callable[[], bool]) -> None:
        """Block until ``enough()`` or the body ended; called holding the condition."""
        if self._on_first_read is not None:
            self._on_first_read()
            self._on_first_read = None
        deadline = time.monotonic() + IDLE_SECONDS
        seen = len(self._buffer)
        while not enough() and not self._ended:
            if self._error is not None:
                raise self._error
            self._resume()  # the reader wants more than is buffered: never wait on a pause
            left = deadline - time.monotonic()
            if left <= 0:
                raise BodyTimeout(f"no byte of the request body for {IDLE_SECONDS:.0f} s")
            self._cond.wait(left)
            if len(self._buffer) != seen:
                deadline, seen = time.monotonic() + IDLE_SECONDS, len(self._buffer)

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        if len(self._buffer) < LOW_WATER:
            self._resume()
        return data

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            self._pause(False)

    def read(self, size: int | None = -1) -> bytes:
        with self._cond:
            if size is None or size < 0:
                self._wait_for(lambda: False)
                return self._take(len(self._buffer))
            self._wait_for(lambda: len(self._buffer) >= size)
            return self._take(size)

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        with self._cond:

            def enough() -> bool:
                return b"\n" in self._buffer or (limit is not None and len(self._buffer) >= limit)

            self._wait_for(enough)
            end = self._buffer.find(b"\n") + 1 or len(self._buffer)
            return self._take(end if limit is None else min(end, limit))

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(self)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line
