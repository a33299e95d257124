"""Recent per-cell counts of predicted rows: one file per process, summed by whoever reads.

Counts are float64 (a sampled row stands for several); so are the header and the time steps,
whose integers stay exact far past any value they take.

Like client_python's multiprocess mode, each process writes only its own memory-mapped file
(``drift-<pid>.bin``) and a reader sums every file, so no lock spans processes and every
gunicorn worker reads the same totals. The window is a ring of SLOTS time steps; a step is
cleared by the first write after it comes round again, and a reader counts only the steps of
the last window. A file records the model version its counts belong to.
"""

from __future__ import annotations

import mmap
import os
import threading
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

SLOTS = 6
_HEADER = 4  # version, cells, slots, pid
_PREFIX = "drift-"


class _Area:
    """One process's counts for one model version: header, SLOTS stamps, SLOTS x cells."""

    def __init__(self, buffer: mmap.mmap | bytearray, version: int, cells: int) -> None:
        self.buffer = buffer
        self.items = memoryview(buffer).cast("d")
        self.array = np.frombuffer(buffer, dtype=np.float64)
        self.version, self.cells = version, cells
        self.array[:_HEADER] = (version, cells, SLOTS, os.getpid())
        self.stamps = self.array[_HEADER : _HEADER + SLOTS]
        self.stamps[:] = -1
        self.counts = self.array[_HEADER + SLOTS :].reshape(SLOTS, cells)

    @staticmethod
    def size(cells: int) -> int:
        return 8 * (_HEADER + SLOTS + SLOTS * cells)


class Window:
    """This process's writer, and the reader of every sibling's counts."""

    def __init__(self, directory: Path | None, window_seconds: float) -> None:
        self._directory = directory
        self._step = window_seconds / SLOTS
        self._lock = threading.Lock()
        self._area: _Area | None = None
        self._pid = os.getpid()

    def add_counts(self, version: int, counts: NDArray[np.float64]) -> None:
        """Add a whole array of per-cell counts (weighted: a sample's rows stand for several)."""
        with self._lock:
            area = self._writable(version, len(counts))
            area.counts[self._slot(area)] += counts

    def totals(self, version: int, cells: int) -> NDArray[np.float64]:
        """The counts of the last window, summed over every process, for this version."""
        now = self._bucket()
        if self._directory is None:
            with self._lock:
                area = self._area
                tables = [] if area is None else [area.array.copy()]
        else:
            tables = list(self._read_all(now))
        total = np.zeros(cells)
        for table in tables:
            version_, cells_, slots = table[:3]
            if (version_, cells_, slots) != (version, cells, SLOTS):
                continue
            live = table[_HEADER : _HEADER + SLOTS] > now - SLOTS
            total += table[_HEADER + SLOTS :].reshape(SLOTS, cells)[live].sum(axis=0)
        return total

    def _bucket(self) -> int:
        # CLOCK_MONOTONIC is one clock for every process of the machine.
        return int(time.monotonic() // self._step)

    def _slot(self, area: _Area) -> int:
        bucket = self._bucket()
        slot = bucket % SLOTS
        if area.items[_HEADER + slot] != bucket:  # the memoryview: no numpy scalar per row
            area.counts[slot] = 0
            area.items[_HEADER + slot] = bucket
        return slot

    def _writable(self, version: int, cells: int) -> _Area:
        area = self._area
        if area is None or area.version != version or area.cells != cells or self._forked():
            area = self._area = self._new_area(version, cells)
        return area

    def _forked(self) -> bool:
        """A process forked after its parent wrote must not write into the parent's file."""
        if os.getpid() == self._pid:
            return False
        self._pid = os.getpid()
        return True

    def _new_area(self, version: int, cells: int) -> _Area:
        size = _Area.size(cells)
        if self._directory is None:
            return _Area(bytearray(size), version, cells)
        self._directory.mkdir(parents=True, exist_ok=True)
        self._read_all(self._bucket())  # also sweeps dead workers' expired files: reads may be rare
        path = self._directory / f"{_PREFIX}{os.getpid()}.bin"
        temporary = path.with_suffix(".tmp")
        with open(temporary, "w+b") as file:
            # Blocks allocated now: a full /dev/shm fails here (OSError), never as a SIGBUS
            # when a page of the mapping is first written.
            os.posix_fallocate(file.fileno(), 0, size)
            buffer = mmap.mmap(file.fileno(), size)
        area = _Area(buffer, version, cells)
        # Readers see the old file or the whole new one, never a half-made one.
        os.replace(temporary, path)
        return area

    def _read_all(self, now: int) -> list[NDArray[np.float64]]:
        assert self._directory is not None
        tables = []
        for path in self._directory.glob(f"{_PREFIX}*.bin"):
            try:
                table = np.fromfile(path, dtype=np.float64)
            except OSError:
                continue  # replaced or removed meanwhile
            if len(table) < _HEADER + SLOTS:
                continue
            if _expired(table, now) and not alive(int(table[3])):
                path.unlink(missing_ok=True)  # a dead worker's file, with nothing recent left
                continue
            tables.append(table)
        return tables


def _expired(table: NDArray[np.float64], now: int) -> bool:
    return bool(np.all(table[_HEADER : _HEADER + SLOTS] <= now - SLOTS))


def alive(pid: int) -> bool:
    """Whether a process of this pid exists (this sweep's and the job runner's test)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
