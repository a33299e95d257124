"""JSON log lines, one object per line, with the request id when there is one."""

from __future__ import annotations

import logging
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


def configure(level: str) -> None:
    """Send the service's loggers to stderr as JSON; idempotent."""
    # The lines carry no file or line number: skip logging's stack walk on every call (the
    # logging HOWTO's "Optimization" section documents this switch).
    logging._srcfile = None
    root = logging.getLogger("neuron")
    root.setLevel(level.upper())
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
        root.propagate = False
