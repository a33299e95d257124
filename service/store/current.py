"""CurrentModel: this process's serving version, refreshed whenever the store's pointer moves."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..errors import CorruptModel, NotFound, NotReady, StorageUnavailable
from .base import Store
from .document import ModelRecord

# After the store failed to hand over a new version, how long to serve the held one before
# asking again: an outage must not cost every request a connection attempt.
RETRY_SECONDS = 1.0


class CurrentModel:
    """The one place a worker learns of retrains made by any worker or process.

    get() reads the store's pointer (a few bytes of CURRENT, or the number the PostgreSQL
    store's watcher keeps in memory) and, when it moved, loads that version and swaps it in
    with one assignment: a request always sees one whole model. While the store cannot hand
    over a new version, the one held is served.
    """

    def __init__(self, store: Store, on_swap: Callable[[ModelRecord], None] | None = None) -> None:
        self._store = store
        self._on_swap = on_swap
        self._refresh_lock = threading.Lock()
        # (pointer value last acted on, record served); replaced whole, never mutated.
        self._state: tuple[int | None, ModelRecord | None] = (None, None)
        self._retry_at = 0.0

    def get(self) -> ModelRecord:
        """The record to answer this request with; NotReady if there is none."""
        seen, record = self._state
        pointer = self._store.pointer()
        if record is None or (pointer != seen and time.monotonic() >= self._retry_at):
            record = self._refresh(pointer)
        return record

    def peek(self) -> ModelRecord | None:
        """The record held now, without looking at the store."""
        return self._state[1]

    def set(self, record: ModelRecord) -> None:
        """Serve this record (just saved or loaded by this process)."""
        self._swap(self._store.pointer(), record)

    def _refresh(self, pointer: int | None) -> ModelRecord:
        with self._refresh_lock:
            seen, record = self._state
            if pointer == seen and record is not None:
                return record  # another thread refreshed meanwhile
            try:
                fresh = self._load(pointer) or record
            except StorageUnavailable:
                if record is None:
                    raise
                self._retry_at = time.monotonic() + RETRY_SECONDS
                return record  # the store is down: keep answering with the model held
            if fresh is None:
                raise NotReady("no model is loaded yet")
            self._swap(pointer, fresh)
            return fresh

    def _load(self, pointer: int | None) -> ModelRecord | None:
        if pointer is not None:
            try:
                return self._store.read(pointer)
            except NotFound:
                pass
            except CorruptModel as exc:
                self._store.quarantine(pointer, str(exc))
        return self._store.load_latest_valid()

    def _swap(self, pointer: int | None, record: ModelRecord) -> None:
        changed = self._state[1] is not record
        self._state = (pointer, record)
        if changed and self._on_swap is not None:
            self._on_swap(record)
