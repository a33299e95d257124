"""gunicorn's gthread worker, taking new connections only while it holds no more than its siblings.

All workers wait on one listening socket. When a burst of keep-alive clients connects (wrk, a
proxy's pool), the first worker to wake could accept all of them, and keep-alive keeps them
there: the other worker idled and throughput halved (tests/integration/test_worker_balance.py:
on stock gthread, bursts left one worker with 0-19 % of the requests). Here each worker
publishes its open connections in memory shared with its siblings, and a worker holding more
than a live sibling stops accepting until that sibling has caught up; the connection waits in
the shared backlog, so no connection is lost when a worker dies or restarts (what a socket per
worker with SO_REUSEPORT would do), and a worker still loading the app takes no share.
"""

from __future__ import annotations

import mmap
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

SLOTS = 64  # more than the workers setting allows (le=64 in settings), so every worker has one
# A sibling whose loop has not run for this long (stopped, hung) is ignored: its share goes to
# the others. A live loop comes round at least once a second (gthread's select timeout).
STALE_SECONDS = 2.0
RECHECK_SECONDS = 0.05  # how often a worker holding back looks at its siblings again


class ConnectionBoard:
    """Open connections and last loop time per worker slot, in an anonymous shared mmap.

    Made in the master before fork, so every worker maps the same memory; the master assigns
    slots in pre_fork and frees them in child_exit. Each slot is written by one process only.
    """

    def __init__(self, slots: int = SLOTS) -> None:
        self._mem = mmap.mmap(-1, 16 * slots)
        view = memoryview(self._mem)
        self._conns = view[: 8 * slots].cast("q")
        self._beat = view[8 * slots :].cast("d")  # time.monotonic() of the loop; 0: not serving
        self.slots = slots

    def assign(self, worker: Any, siblings: Any) -> None:
        """Give ``worker`` the first slot none of ``siblings`` holds (before its fork)."""
        taken = {getattr(w, "board_slot", None) for w in siblings}
        free = next((i for i in range(self.slots) if i not in taken), None)
        if free is not None:
            self.leave(free)
        worker.board, worker.board_slot = self, free

    def beat(self, slot: int, conns: int) -> None:
        self._conns[slot] = conns
        self._beat[slot] = time.monotonic()

    def leave(self, slot: int | None) -> None:
        """The slot's worker is stopping or gone: its siblings stop counting it."""
        if slot is not None:
            self._beat[slot] = 0.0
            self._conns[slot] = 0

    def fewest_elsewhere(self, slot: int) -> int | None:
        """The fewest connections a live sibling of ``slot`` holds; None if there is none."""
        fresh_after = time.monotonic() - STALE_SECONDS
        counts = [
            self._conns[i] for i in range(self.slots) if i != slot and self._beat[i] > fresh_after
        ]
        return min(counts, default=None)


class FairThreadWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn ships no types
    """gthread, but a worker that holds more connections than a live sibling does not accept."""

    board: ConnectionBoard | None = None
    board_slot: int | None = None
    _holding_back = False

    def _fair_to_accept(self) -> bool:
        if self.board is None or self.board_slot is None:
            return True
        fewest = self.board.fewest_elsewhere(self.board_slot)
        return fewest is None or self.nr_conns <= fewest

    def _publish(self) -> None:
        if self.board is None or self.board_slot is None:
            return
        if self.alive:
            self.board.beat(self.board_slot, self.nr_conns)
        else:
            self.board.leave(self.board_slot)

    def set_accept_enabled(self, enabled: bool) -> None:
        fair = self._fair_to_accept() if enabled else True
        self._holding_back = enabled and not fair
        super().set_accept_enabled(enabled and fair)

    def accept(self, listener: Any) -> None:
        super().accept(listener)
        self._publish()
        if self._accepting:
            self.set_accept_enabled(True)  # still fair with one more connection?

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        self._publish()
        if self._holding_back and self.alive:
            self.set_accept_enabled(True)
        if self._holding_back:
            timeout = min(timeout, RECHECK_SECONDS)
        super().wait_for_and_dispatch_events(timeout)
