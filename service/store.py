"""ModelStore: versioned, checksummed JSON model documents with atomic, durable, locked writes."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import CorruptModel, InsufficientStorage, NotFound, StorageUnavailable
from .neuron import Neuron, Scaling

log = logging.getLogger("neuron.store")

FORMAT = "neuron-model"
FORMAT_VERSION = 1
POINTER = "CURRENT"
LOCK = ".lock"
TEMP_PREFIX = ".tmp-"
_MODEL_FILE = re.compile(r"^model-(\d{8})\.json$")
_ANY_VERSION_FILE = re.compile(r"^model-(\d{8})\.json(?:\.corrupt)?$")


def _all_finite(values: list[float]) -> list[float]:
    if not np.all(np.isfinite(values)):
        raise ValueError("values must be finite")
    return values


class StoredScaling(BaseModel):
    """Standardization fitted on the training rows: inputs become (x - mean) / scale."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: list[float]
    scale: list[float]

    @field_validator("mean", "scale")
    @classmethod
    def _finite(cls, values: list[float]) -> list[float]:
        return _all_finite(values)

    @field_validator("scale")
    @classmethod
    def _positive(cls, values: list[float]) -> list[float]:
        if not all(value > 0 for value in values):
            raise ValueError("every scale must be positive")
        return values


class Validation(BaseModel):
    """Scores on held-out rows the model never trained on, beside a constant answer's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: int = Field(ge=1, description="Held-out rows.")
    loss: float = Field(ge=0, description="Mean squared error on the held-out rows.")
    accuracy: float = Field(ge=0, le=1, description="Share of held-out rows on the right side.")
    baseline_accuracy: float = Field(
        ge=0, le=1, description="Accuracy of always answering the training rows' majority class."
    )


class TrainingMetadata(BaseModel):
    """How a model version came to be."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["default", "retrain", "rollback"]
    seed: int
    iterations: int = Field(ge=0)
    learning_rate: float
    loss: float = Field(ge=0, description="Mean squared error on the training data.")
    initial_loss: float = Field(ge=0)
    rows: int = Field(ge=1)
    data_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    trained_at: datetime
    duration_seconds: float = Field(ge=0)
    rolled_back_to: int | None = Field(None, description="For a rollback: the version copied.")
    # Added after format 1 was first written: optional, so older documents still load.
    accuracy: float | None = Field(None, ge=0, le=1, description="Accuracy on the training rows.")
    baseline_accuracy: float | None = Field(
        None, ge=0, le=1, description="The majority class's accuracy on the training rows."
    )
    validation_fraction: float = Field(0.0, ge=0, lt=1, description="Share of rows held out.")
    validation: Validation | None = Field(None, description="Held-out scores; null without one.")


class ModelDocument(BaseModel):
    """The persisted document, minus its checksum."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["neuron-model"]
    format_version: Literal[1]
    version: int = Field(ge=1)
    n_inputs: int = Field(ge=1)
    weights: list[float]
    training: TrainingMetadata
    scaling: StoredScaling | None = None  # optional: documents before standardization load
    feature_names: list[str] | None = None

    @field_validator("weights")
    @classmethod
    def _finite(cls, weights: list[float]) -> list[float]:
        return _all_finite(weights)

    def shape_errors(self) -> list[str]:
        """What does not fit n_inputs: weights, scaling, feature names."""
        sizes = {"weights": len(self.weights)}
        if self.scaling is not None:
            sizes |= {
                "scaling.mean": len(self.scaling.mean),
                "scaling.scale": len(self.scaling.scale),
            }
        if self.feature_names is not None:
            sizes["feature_names"] = len(self.feature_names)
        return [
            f"{name} do not match n_inputs" for name, size in sizes.items() if size != self.n_inputs
        ]

    def neuron(self) -> Neuron:
        weights = np.array(self.weights, dtype=np.float64).reshape(-1, 1)
        if self.scaling is None:
            return Neuron(weights)
        scaling = Scaling(np.array(self.scaling.mean), np.array(self.scaling.scale))
        return Neuron(weights, scaling)


@dataclass(frozen=True)
class ModelRecord:
    """One whole stored version: its document and the neuron built from it."""

    document: ModelDocument
    neuron: Neuron

    @property
    def version(self) -> int:
        return self.document.version


def data_digest(inputs: np.ndarray[Any, Any], targets: np.ndarray[Any, Any]) -> str:
    """sha256 of the training data as float64 bytes, shape included."""
    digest = hashlib.sha256()
    for array in (inputs, targets):
        array = np.ascontiguousarray(array, dtype=np.float64)
        digest.update(repr(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def encode(document: ModelDocument) -> bytes:
    payload = document.model_dump(mode="json")
    checksum = hashlib.sha256(canonical(payload)).hexdigest()
    payload["checksum"] = {"algorithm": "sha256", "value": checksum}
    return _layout(payload)


def _layout(payload: dict[str, Any]) -> bytes:
    """A file's exact bytes: decode() demands them, so that even a changed space is caught."""
    return json.dumps(payload, sort_keys=True, indent=2, allow_nan=False).encode() + b"\n"


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed in a model document")


def decode(raw: bytes) -> ModelRecord:
    """Parse and verify a stored document; raises CorruptModel on any defect."""
    try:
        payload = json.loads(raw, parse_constant=_refuse_constant)
        if _layout(payload) != raw:
            raise CorruptModel("the file is not laid out as it was written")
        checksum = payload.pop("checksum")
        expected = hashlib.sha256(canonical(payload)).hexdigest()
        if checksum != {"algorithm": "sha256", "value": expected}:
            raise CorruptModel("checksum mismatch")
        document = ModelDocument.model_validate(payload)
    except CorruptModel:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, ValidationError) as exc:
        raise CorruptModel(f"unreadable model document: {exc}") from exc
    defects = document.shape_errors()
    if defects:
        raise CorruptModel("; ".join(defects))
    return ModelRecord(document, document.neuron())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _storage_error(exc: OSError) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return InsufficientStorage("the model directory is full; the model was not saved")
    return StorageUnavailable(f"the model directory is not writable: {exc.strerror}")


class ModelStore:
    """Model versions as model-00000001.json ... in one directory, plus a CURRENT pointer.

    The newest valid version is the serving one; CURRENT names it so that every worker can
    notice a change by reading a few bytes.
    """

    def __init__(
        self,
        directory: Path,
        keep: int = 5,
        on_corrupt: Callable[[int, str], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.keep = keep
        self._on_corrupt = on_corrupt
        self._pointer = self.directory / POINTER

    def path(self, version: int) -> Path:
        return self.directory / f"model-{version:08d}.json"

    # -- reading -----------------------------------------------------------------------------

    def versions(self) -> list[int]:
        """Stored (not quarantined) versions, newest first."""
        found = (_MODEL_FILE.match(name) for name in self._names())
        return sorted((int(m.group(1)) for m in found if m), reverse=True)

    def pointer(self) -> int | None:
        """The version CURRENT names; cheap enough to call on every request."""
        try:
            fd = os.open(self._pointer, os.O_RDONLY)
        except OSError:  # absent or unreachable: callers keep what they hold
            return None
        try:
            text = os.read(fd, 32)
        finally:
            os.close(fd)
        return int(text) if text.strip().isdigit() else None

    def read(self, version: int) -> ModelRecord:
        """One version, verified; NotFound if absent, CorruptModel if damaged."""
        try:
            raw = self.path(version).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"model version {version} is not stored") from None
        except OSError as exc:
            raise CorruptModel(f"cannot read: {exc.strerror}") from exc
        record = decode(raw)
        if record.version != version:
            raise CorruptModel(f"file of version {version} holds version {record.version}")
        return record

    def load_latest_valid(self) -> ModelRecord | None:
        """Newest version that verifies; damaged ones on the way are quarantined."""
        for version in self.versions():
            try:
                return self.read(version)
            except NotFound:
                continue
            except CorruptModel as exc:
                self.quarantine(version, str(exc))
        return None

    def quarantine(self, version: int, reason: str) -> None:
        """Move a damaged version aside as *.corrupt, so it is neither served nor retried."""
        log.error("model version %d is damaged (%s): quarantined", version, reason)
        try:
            os.replace(self.path(version), f"{self.path(version)}.corrupt")
        except FileNotFoundError:
            return  # another worker moved it first
        except OSError as exc:
            log.error("could not quarantine version %d: %s", version, exc.strerror)
        if self._on_corrupt is not None:
            self._on_corrupt(version, reason)

    # -- writing -----------------------------------------------------------------------------

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock of the writers, across threads, workers and processes."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:  # e.g. a read-only file system
            raise _storage_error(exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def save(
        self,
        neuron: Neuron,
        training: TrainingMetadata,
        feature_names: list[str] | None = None,
    ) -> ModelRecord:
        """Write a new version (lock held only to number, write and point), prune old ones."""
        with self.lock():
            return self.save_locked(neuron, training, feature_names)

    def save_locked(
        self,
        neuron: Neuron,
        training: TrainingMetadata,
        feature_names: list[str] | None = None,
    ) -> ModelRecord:
        """save() for a caller that already holds lock()."""
        scaling = neuron.scaling
        document = ModelDocument(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            version=self._next_version(),
            n_inputs=neuron.n_inputs,
            weights=[float(w) for w in neuron.weights[:, 0]],
            training=training,
            scaling=None
            if scaling is None
            else StoredScaling(mean=scaling.mean.tolist(), scale=scaling.scale.tolist()),
            feature_names=feature_names,
        )
        if document.shape_errors():  # a caller's bug: never write what decode() would refuse
            raise ValueError("; ".join(document.shape_errors()))
        path = self.path(document.version)
        raw = encode(document)
        try:
            self._write_atomic(path, raw)
            try:
                self._write_atomic(self._pointer, f"{document.version}\n".encode())
            except OSError:
                path.unlink()  # a version that was refused must not be served after a restart
                raise
        except OSError as exc:
            raise _storage_error(exc) from exc
        self._prune()
        return decode(raw)  # what a reader will get: the same verified bytes

    def point_to_latest_locked(self) -> ModelRecord | None:
        """Under lock(): drop leftover temp files, make CURRENT name the newest valid version."""
        self._remove_temp_files()
        record = self.load_latest_valid()
        if record is not None and self.pointer() != record.version:
            try:
                self._write_atomic(self._pointer, f"{record.version}\n".encode())
            except OSError as exc:
                log.error("could not repair %s: %s", POINTER, exc.strerror)
        return record

    def _names(self) -> list[str]:
        try:
            return os.listdir(self.directory)
        except OSError:  # absent or unreachable: nothing to load from here
            return []

    def _next_version(self) -> int:
        # Quarantined numbers count too: a version number is never given out twice.
        found = (_ANY_VERSION_FILE.match(name) for name in self._names())
        return max((int(m.group(1)) for m in found if m), default=0) + 1

    def _write_atomic(self, path: Path, data: bytes) -> None:
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        _fsync_dir(self.directory)

    def _prune(self) -> None:
        for version in self.versions()[self.keep :]:
            self.path(version).unlink(missing_ok=True)

    def _remove_temp_files(self) -> None:
        for name in self._names():
            if name.startswith(TEMP_PREFIX):
                (self.directory / name).unlink(missing_ok=True)


def utc_now() -> datetime:
    return datetime.now(UTC)
