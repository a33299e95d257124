"""ModelStore: versioned, checksummed JSON model documents with atomic, durable, locked writes."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import CorruptModel, InsufficientStorage, NotFound, StorageUnavailable
from ..model.neuron import Neuron
from .base import Store
from .document import ModelRecord, TrainingMetadata, decode, encode, new_document

log = logging.getLogger("neuron.store")

POINTER = "CURRENT"
LOCK = ".lock"
TEMP_PREFIX = ".tmp-"
_MODEL_FILE = re.compile(r"^model-(\d{8})\.json$")
_ANY_VERSION_FILE = re.compile(r"^model-(\d{8})\.json(?:\.corrupt)?$")


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


class PinnedPointer:
    """The number in a pointer file, read again only when the file there changed.

    Writers replace the file by rename. The file last read is held open, so its inode number
    cannot be reused: a stat(2) that finds that inode, size and mtime finds the same number.
    One syscall per request instead of open, read and close.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._held: tuple[tuple[int, ...], int | None, int] | None = None  # identity, number, fd
        self._reading = threading.Lock()

    def read(self) -> int | None:
        try:
            found = os.stat(self._path)
        except OSError:  # absent or unreachable: callers keep what they hold
            return None
        held = self._held
        if held is not None and held[0] == _identity(found):
            return held[1]
        return self._read_again()

    def _read_again(self) -> int | None:
        with self._reading:
            try:
                fd = os.open(self._path, os.O_RDONLY)
            except OSError:
                return None
            try:
                identity, text = _identity(os.fstat(fd)), os.read(fd, 32)
            except OSError:
                os.close(fd)
                return None
            number = int(text) if text.strip().isdigit() else None
            old, self._held = self._held, (identity, number, fd)
            if old is not None:
                os.close(old[2])
            return number

    def __del__(self) -> None:
        if self._held is not None:
            os.close(self._held[2])


def _identity(status: os.stat_result) -> tuple[int, ...]:
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


class ModelStore(Store):
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
        self._current = PinnedPointer(self._pointer)

    def path(self, version: int) -> Path:
        return self.directory / f"model-{version:08d}.json"

    # -- reading -----------------------------------------------------------------------------

    def versions(self) -> list[int]:
        """Stored (not quarantined) versions, newest first."""
        found = (_MODEL_FILE.match(name) for name in self._names())
        return sorted((int(m.group(1)) for m in found if m), reverse=True)

    def up(self) -> bool:
        """Always True: a directory that fails is reported by the operation that needs it."""
        return True

    def pointer(self) -> int | None:
        """The version CURRENT names; cheap enough to call on every request."""
        return self._current.read()

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

    def save_locked(
        self,
        neuron: Neuron,
        training: TrainingMetadata,
        feature_names: list[str] | None = None,
    ) -> ModelRecord:
        """save() for a caller that already holds lock()."""
        document = new_document(self._next_version(), neuron, training, feature_names)
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
