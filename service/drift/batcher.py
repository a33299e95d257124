"""Rows waiting to be counted: a prediction only appends; a thread counts them in batches.

Counting one row in the request cost ~10 µs inside a busy worker (cold caches, a dozen calls;
timed once by instrumenting a worker under wrk, not a `make bench` figure), 2 % of a
single-row request; appending it to a deque and its share of one numpy flush cost ~0.9 µs
(`make bench`'s micro-suite, "drift counting, 64 single rows"). Every FLUSH_SECONDS a thread
of the worker (a daemon) counts what has piled up with numpy, in one pass per model version.
A reader of this process flushes first; other workers' rows reach the window within
FLUSH_SECONDS.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from itertools import groupby

import numpy as np

from ..model.neuron import Matrix
from ..store import ModelRecord

FLUSH_SECONDS = 0.25
Count = Callable[[ModelRecord, Matrix, float], None]
log = logging.getLogger("neuron.drift")
_ALL: weakref.WeakSet[Batcher] = weakref.WeakSet()


class Batcher:
    """Pending (record, rows, weight) items, and the thread that counts them."""

    def __init__(self, count: Count) -> None:
        self._count = count
        self._pending: deque[tuple[ModelRecord, Matrix, float]] = deque()
        self._flushing = threading.Lock()
        self._thread: threading.Thread | None = None
        _ALL.add(self)

    def add(self, record: ModelRecord, rows: Matrix, weight: float) -> None:
        self._pending.append((record, rows, weight))
        if self._thread is None:
            self._start()

    def flush(self) -> None:
        """Count everything pending now, grouped by model version and weight."""
        with self._flushing:
            taken = [self._pending.popleft() for _ in range(len(self._pending))]
            for _, same in groupby(taken, key=lambda item: (id(item[0]), item[2])):
                group = list(same)
                record, weight = group[0][0], group[0][2]
                self._count(record, np.concatenate([rows for _, rows, _ in group]), weight)

    def _start(self) -> None:
        with self._flushing:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="drift", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            try:
                self.flush()
            except Exception:  # never let the thread die: the next flush may succeed
                log.exception("counting rows for input drift failed")

    def _forked(self) -> None:
        """In a child process: the parent's thread is not there; neither are its rows."""
        self._thread = None
        self._pending.clear()
        self._flushing = threading.Lock()


def _after_fork() -> None:
    for batcher in list(_ALL):
        batcher._forked()


os.register_at_fork(after_in_child=_after_fork)
