"""LoopWorker: a gunicorn worker that serves HTTP/1.1 from an event loop (NEURON_HTTP_WORKER=loop).

gunicorn's threaded worker hands every request from its accept loop to a thread and back:
~230 µs of a 2-core machine's CPU for a request that does nothing (issue 20, bench/README.md).
Here one loop (uvloop) owns the sockets, httptools parses, and a small request runs the WSGI
app inline on the loop: no hand-off at all. Work that can take long (admin writes, retrains,
metrics collection, bodies over 64 KiB or chunked) runs in a thread pool of NEURON_THREADS
threads, so the loop keeps answering everyone else meanwhile (service/server/h1.py, Lanes).

It keeps gunicorn's contract: the heartbeat (a stalled loop is killed after `timeout`),
max_requests, graceful shutdown on SIGTERM (requests in flight finish, idle keep-alive
connections close), quick exit on SIGINT/SIGQUIT, the request limits, and the fair share of
connections between workers (service/server/fairworker.py's ConnectionBoard).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from typing import Any

from gunicorn.workers.base import Worker

from .exchange import Dated
from .fairworker import ConnectionBoard
from .h1 import HttpConnection
from .host import Lanes, Limits

TICK_SECONDS = 1.0  # heartbeat, Date header, parent check: gunicorn's timeout is >= 2 s
HOLD_BACK_SECONDS = 0.002  # a worker holding more connections than a sibling looks again
BUSY_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # uvloop is a dependency; plain asyncio still serves correctly
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoopWorker(Worker):  # type: ignore[misc]  # gunicorn ships no types
    """One event loop per worker process; see the module's docstring."""

    board: ConnectionBoard | None = None  # set by gunicorn.conf.py's pre_fork
    board_slot: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.cfg
        self.limits = Limits(
            request_line=cfg.limit_request_line or sys.maxsize,
            header_count=cfg.limit_request_fields or sys.maxsize,
            header_field=cfg.limit_request_field_size or sys.maxsize,
            keepalive_seconds=float(cfg.keepalive),
            head_seconds=float(cfg.timeout),
        )
        self.lanes = Lanes()
        self.connections: set[HttpConnection] = set()
        self.nr_conns = 0  # accepted sockets not yet closed (counted before connection_made)
        self.quick = False
        self._accepting = False
        self._listeners: list[socket.socket] = []
        self._threads: ThreadPoolExecutor | None = None
        self._wake: asyncio.Event | None = None

    # -- gunicorn's Worker --------------------------------------------------------------------

    def init_process(self) -> None:
        self.loop = new_loop()
        asyncio.set_event_loop(self.loop)
        super().init_process()

    def init_signals(self) -> None:
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        add = self.loop.add_signal_handler
        add(signal.SIGTERM, self._stop, False)
        add(signal.SIGQUIT, self._stop, True)
        add(signal.SIGINT, self._stop, True)
        add(signal.SIGUSR1, self.log.reopen_files)
        add(signal.SIGWINCH, lambda: None)
        add(signal.SIGABRT, self._abort)

    @property
    def serving(self) -> bool:
        return bool(self.alive)

    def run(self) -> None:
        self._threads = ThreadPoolExecutor(self.cfg.threads, thread_name_prefix="http")
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self._threads.shutdown(wait=not self.quick, cancel_futures=True)
            self.loop.close()

    # -- what HttpConnection asks of its host -------------------------------------------------

    def run_in_thread(self, work: Callable[[], None]) -> None:
        assert self._threads is not None
        self._threads.submit(work)

    def opened(self, conn: HttpConnection) -> None:
        self.connections.add(conn)

    def closed(self, conn: HttpConnection) -> None:
        self.connections.discard(conn)
        self.nr_conns -= 1
        self._publish()
        self._resume_accepting()

    def answered(self) -> None:
        self.nr += 1
        if self.max_requests and self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self._stop(False)

    # -- serving ------------------------------------------------------------------------------

    async def _serve(self) -> None:
        self._wake = asyncio.Event()
        for listener in self.sockets:
            sock = getattr(listener, "sock", listener)
            sock.setblocking(False)
            self._listeners.append(sock)
        self._resume_accepting()
        while self.alive:
            self._tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_SECONDS)
        await self._wind_down()

    def _tick(self) -> None:
        self.notify()
        Dated.value = formatdate(usegmt=True)
        self._publish()
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            self.alive = False

    async def _wind_down(self) -> None:
        """Accept nothing more; let requests in flight finish within graceful_timeout."""
        self._pause_accepting()
        if self.board is not None:
            self.board.leave(self.board_slot)
        if self.quick:
            return
        for conn in list(self.connections):
            conn.shutdown()
        deadline = self.loop.time() + self.cfg.graceful_timeout
        while self.connections and self.loop.time() < deadline:
            self.notify()
            await asyncio.sleep(0.05)

    def _stop(self, quick: bool) -> None:
        if quick and not self.quick:
            self.quick = True
            self.cfg.worker_int(self)
        self.alive = False
        self._pause_accepting()  # now, not at the next turn of _serve: max_requests is exact
        if self._wake is not None:
            self._wake.set()

    def _abort(self) -> None:
        self.alive = False
        self.cfg.worker_abort(self)
        sys.exit(1)

    # -- accepting ----------------------------------------------------------------------------

    def _fair(self) -> bool:
        """Below the connection limit, and holding no more than a live sibling does."""
        if self.nr_conns >= self.cfg.worker_connections or not self.alive:
            return False
        if self.board is None or self.board_slot is None:
            return True
        fewest = self.board.fewest_elsewhere(self.board_slot)
        return fewest is None or self.nr_conns <= fewest

    def _resume_accepting(self) -> None:
        if self._accepting or not self.alive:
            return
        if not self._fair():
            self.loop.call_later(HOLD_BACK_SECONDS, self._resume_accepting)
            return
        self._accepting = True
        for sock in self._listeners:
            self.loop.add_reader(sock.fileno(), self._accept, sock)

    def _pause_accepting(self) -> None:
        if self._accepting:
            self._accepting = False
            for sock in self._listeners:
                self.loop.remove_reader(sock.fileno())

    def _accept(self, listener: socket.socket) -> None:
        while self._fair():
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in BUSY_ERRNOS:  # out of descriptors: let others take it a while
                    self.log.error("accept failed: %s", exc)
                    self._pause_accepting()
                    self.loop.call_later(0.5, self._resume_accepting)
                return
            self.nr_conns += 1
            self._publish()
            sock.setblocking(False)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.loop.create_task(self._connect(sock))
        self._pause_accepting()
        self.loop.call_later(HOLD_BACK_SECONDS, self._resume_accepting)

    async def _connect(self, sock: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: HttpConnection(self), sock)
        except OSError:
            sock.close()
            self.nr_conns -= 1

    def _publish(self) -> None:
        if self.board is not None and self.board_slot is not None and self.alive:
            self.board.beat(self.board_slot, self.nr_conns)
