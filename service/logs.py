"""JSON log lines, one object per line, with the request id when there is one."""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

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
        line = self._head(record.created, record.levelname, record.name, record.getMessage())
        line["pid"] = record.process
        line.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()

    def _head(self, created: float, level: str, logger: str, msg: str) -> dict[str, Any]:
        return {
            "ts": self._timestamp(created),
            "level": level.lower(),
            "logger": logger,
            "msg": msg,
        }

    def line(self, logger: str, msg: str, fields: dict[str, Any]) -> bytes:
        """The line format() gives for an INFO record of ``msg`` with ``fields`` as its extra."""
        line = {
            "ts": self._timestamp(time.time()),
            "level": "info",
            "logger": logger,
            "msg": msg,
            "pid": os.getpid() if logging.logProcesses else None,
            **fields,
        }
        return orjson.dumps(line, default=str, option=orjson.OPT_APPEND_NEWLINE)


class _NoLock:
    """A lock that never blocks: what logging's acquire/release and `with` find on the handler."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None

    def acquire(self, *args: object) -> bool:
        return True

    def release(self) -> None:
        return None

    def _at_fork_reinit(self) -> None:
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
        # Python 3.12+ runs `with self.lock:` in Handler.handle (3.11 skips a None lock):
        # a no-op context manager keeps both lockless and both correct.
        self.lock = _NO_LOCK  # type: ignore[assignment]

    def handle(self, record: logging.LogRecord) -> bool:
        """Handler.handle without the lock: filter, then emit; the same result on 3.11-3.13."""
        rv = self.filter(record)
        if isinstance(rv, logging.LogRecord):  # 3.12+: a filter may return a replacement
            record = rv
        if rv:
            self.emit(record)
        return bool(rv)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write((self.format(record) + "\n").encode())
        except Exception:
            self.handleError(record)

    def write(self, line: bytes) -> None:
        """One whole line to stderr."""
        stream = sys.stderr  # looked up per line: whoever replaced sys.stderr gets it
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):  # not backed by a file descriptor
            stream.write(line.decode())
            return
        written = os.write(fd, line)
        if written < len(line):  # a pipe or a signal may take part of a line: write the rest
            view = memoryview(line)[written:]
            while view:
                view = view[os.write(fd, view) :]


class InfoLines:
    """``logger.info(msg, extra=fields)``, written without a LogRecord when that is the same.

    When the line's only way out is this module's LineHandler and JsonFormatter, with no
    filter on the way, the formatter's line is built from the fields and written directly:
    6 us less per access-log line than logging's record, lookup and format (bench/README.md).
    Anything else configured (another handler, a filter, a level) gets the record, as before.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def info(self, msg: str, fields: dict[str, Any]) -> None:
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        sole = _sole_handler(logger)
        if sole is None:
            logger.info(msg, extra=fields)
            return
        handler, formatter = sole
        try:
            handler.write(formatter.line(logger.name, msg, fields))
        except Exception:
            handler.handleError(logger.makeRecord(logger.name, logging.INFO, "", 0, msg, (), None))


def _sole_handler(logger: logging.Logger) -> tuple[LineHandler, JsonFormatter] | None:
    """The one handler an INFO record of ``logger`` would reach, if it is a plain JSON one."""
    found: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters or current.disabled:
            return None
        found += current.handlers
        if not current.propagate:
            break
        current = current.parent
    if len(found) != 1:
        return None
    handler, formatter = found[0], found[0].formatter
    if (
        type(handler) is not LineHandler
        or type(formatter) is not JsonFormatter
        or handler.filters
        or handler.level > logging.INFO
    ):
        return None
    return handler, formatter


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
