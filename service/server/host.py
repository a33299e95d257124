"""What an HTTP connection needs from its worker: the app, the loop, limits, lanes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class Host(Protocol):
    """What a connection (h1.py) needs from its worker (loopworker.py)."""

    wsgi: Any  # the WSGI app
    loop: asyncio.AbstractEventLoop
    limits: Limits
    lanes: Lanes
    serving: bool  # false once the worker is stopping: answer what is in flight, then close

    def run_in_thread(self, work: Callable[[], None]) -> None: ...
    def opened(self, conn: Any) -> None: ...
    def closed(self, conn: Any) -> None: ...
    def answered(self) -> None: ...


@dataclass(frozen=True)
class Limits:
    """gunicorn's request limits, and the connection's timeouts."""

    request_line: int = 4094
    header_count: int = 100
    header_field: int = 8190
    keepalive_seconds: float = 5.0
    head_seconds: float = 30.0  # from a request's first byte to its last header

    @property
    def head_bytes(self) -> int:
        """Bytes a request head may take before it is refused whole."""
        return self.request_line + self.header_count * (self.header_field + 2) + 4


@dataclass(frozen=True)
class Lanes:
    """Which requests run inline on the loop; the rest go to a thread."""

    inline_body: int = 64 * 1024  # a Content-Length above this goes to a thread
    thread_prefixes: tuple[str, ...] = ("/admin", "/metrics")  # writes, retrains, file scans

    def inline(self, path: bytes, length: int | None) -> bool:
        if length is None or length > self.inline_body:
            return False
        return not path.decode("latin-1").startswith(self.thread_prefixes)
