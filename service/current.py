"""CurrentModel: this process's serving version, refreshed whenever the store's CURRENT moves."""

from __future__ import annotations

import threading
from collections.abc import Callable

from .errors import CorruptModel, NotFound, NotReady
from .store import ModelRecord, ModelStore


class CurrentModel:
    """The one place a worker learns of retrains made by any worker or process.

    get() reads the store's CURRENT pointer (a few bytes) and, when it moved, loads that
    version and swaps it in with one assignment: a request always sees one whole model.
    """

    def __init__(
        self, store: ModelStore, on_swap: Callable[[ModelRecord], None] | None = None
    ) -> None:
        self._store = store
        self._on_swap = on_swap
        self._refresh_lock = threading.Lock()
        # (pointer value last acted on, record served); replaced whole, never mutated.
        self._state: tuple[int | None, ModelRecord | None] = (None, None)

    def get(self) -> ModelRecord:
        """The record to answer this request with; NotReady if there is none."""
        seen, record = self._state
        pointer = self._store.pointer()
        if pointer != seen or record is None:
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
            fresh = self._load(pointer) or record
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
