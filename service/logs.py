"""JSON log lines, one object per line, with the request id when there is one."""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime

import orjson

_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    # (second, its ISO text): the access log formats a line per request, and datetime's
    # isoformat() was a third of the formatter's time. One tuple, replaced whole: thread-safe.
    _second: tuple[int, str] = (-1, "")

    def _timestamp(self, created: float) -> str:
        """What datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds") gives."""
        second = int(created)
        cached, text = self._second
        if cached != second:
            text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = (second, text)
        return f"{text}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        line.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class _NoLock:
    """A lock that never waits, for Handler.handle()'s `with self.lock:` and acquire()."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None

    def acquire(self, *args: object) -> bool:
        return True

    def release(self) -> None:
        return None


_NO_LOCK = _NoLock()


class LineHandler(logging.Handler):
    """Each line goes to stderr in one write(2), with no handler lock and no separate flush.

    StreamHandler holds a lock across write and flush: under gunicorn's threads, requests
    queued on that lock behind each other's syscalls, and the access log cost a fifth of a
    worker's CPU (py-spy, bench/results). One write(2) of a whole line is not interleaved
    with another thread's, so the lock bought nothing.
    """

    def createLock(self) -> None:
        # Not None: Python 3.13's Handler.handle() does `with self.lock:`.
        self.lock = _NO_LOCK  # type: ignore[assignment]

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            stream = sys.stderr  # looked up per line: whoever replaced sys.stderr gets it
            try:
                fd = stream.fileno()
            except (AttributeError, OSError, ValueError):  # not backed by a file descriptor
                stream.write(line)
                return
            view = memoryview(line.encode())
            while view:
                view = view[os.write(fd, view) :]
        except Exception:
            self.handleError(record)


def configure(level: str) -> None:
    """Send the service's loggers to stderr as JSON; idempotent."""
    # The lines carry no file or line number: skip logging's stack walk on every call (the
    # logging HOWTO's "Optimization" section documents this switch).
    logging._srcfile = None
    root = logging.getLogger("neuron")
    root.setLevel(level.upper())
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = LineHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
        root.propagate = False
