"""Store: the interface both model store backends (directory, PostgreSQL) implement."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

from ..model.neuron import Neuron
from .document import ModelRecord, TrainingMetadata

OnCorrupt = Callable[[int, str], None]


class Store(Protocol):
    """Versioned, checksummed model documents; the newest valid version is the serving one.

    The backends subclass it, so that save() is written once, here.

    Errors: NotFound (no such version), CorruptModel (it failed verification), and the
    ServiceErrors StorageUnavailable / InsufficientStorage when the store cannot be written.
    """

    keep: int

    def versions(self) -> list[int]:
        """Stored (not quarantined) versions, newest first."""
        ...

    def pointer(self) -> int | None:
        """The serving version as last seen; cheap enough to call on every request."""
        ...

    def up(self) -> bool:
        """Whether the store answered the last time this process asked it."""
        ...

    def read(self, version: int) -> ModelRecord:
        """One version, verified; NotFound if absent, CorruptModel if damaged."""
        ...

    def load_latest_valid(self) -> ModelRecord | None:
        """Newest version that verifies; damaged ones on the way are quarantined."""
        ...

    def quarantine(self, version: int, reason: str) -> None:
        """Set a damaged version aside, so that it is neither served nor retried."""
        ...

    def lock(self) -> AbstractContextManager[None]:
        """The writers' lock, across threads, workers, processes (and hosts, for PostgreSQL)."""
        ...

    def save(
        self,
        neuron: Neuron,
        training: TrainingMetadata,
        feature_names: list[str] | None = None,
    ) -> ModelRecord:
        """Store a new version under lock() and make it the serving one."""
        with self.lock():
            return self.save_locked(neuron, training, feature_names)

    def save_locked(
        self,
        neuron: Neuron,
        training: TrainingMetadata,
        feature_names: list[str] | None = None,
    ) -> ModelRecord:
        """save() for a caller that already holds lock()."""
        ...

    def point_to_latest_locked(self) -> ModelRecord | None:
        """Under lock(): tidy up and make the pointer name the newest valid version."""
        ...
