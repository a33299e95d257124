"""Board: where jobs are kept; DirectoryBoard keeps them as files beside the spooled bodies.

Every change is a read-modify-write under the board's lock (Board.update), so a cancel from
an HTTP worker and a progress write from the training process never lose each other. One
job trains at a time per store: training_slot() is held for the whole run.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from ..errors import InsufficientStorage, StorageUnavailable
from .job import Job

log = logging.getLogger("neuron.jobs")

Change = Callable[[Job], Job | None]  # the job as it is now -> as it should be (None: as is)


class Board(Protocol):
    """Jobs shared by every worker and training process of the store (and its replicas)."""

    def add(self, job: Job) -> None: ...
    def get(self, job_id: str) -> Job | None: ...
    def recent(self, limit: int) -> list[Job]:
        """Newest first."""
        ...

    def update(self, job_id: str, change: Change) -> Job | None:
        """Apply ``change`` atomically; the job after it, or None if there is no such job."""
        ...

    def training_slot(self) -> AbstractContextManager[bool]:
        """Held while one job trains: True if this process got it, False if another has it."""
        ...

    def remove(self, job_id: str) -> None: ...


class DirectoryBoard(Board):
    """<dir>/<id>.json per job, replaced atomically; one flock for changes, one for training."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, job_id: str) -> Path:
        return self.directory / f"{job_id}.json"

    def add(self, job: Job) -> None:
        with self._locked(".board.lock"):
            self._write(job)

    def get(self, job_id: str) -> Job | None:
        try:
            return Job.model_validate_json(self._path(job_id).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError) as exc:
            raise StorageUnavailable(f"job {job_id} cannot be read: {exc}") from None

    def recent(self, limit: int) -> list[Job]:
        if not self.directory.is_dir():
            return []
        jobs = [job for path in self.directory.glob("*.json") if (job := self._readable(path))]
        return sorted(jobs, key=lambda job: job.created_at, reverse=True)[:limit]

    def _readable(self, path: Path) -> Job | None:
        """A job file, or None if it is gone or damaged (one bad file must not hide the rest)."""
        try:
            return self.get(path.stem)
        except StorageUnavailable as exc:
            log.error("%s", exc.message)
            return None

    def update(self, job_id: str, change: Change) -> Job | None:
        with self._locked(".board.lock"):
            job = self.get(job_id)
            if job is None:
                return None
            changed = change(job)
            if changed is None or changed == job:
                return job
            self._write(changed)
            return changed

    @contextmanager
    def training_slot(self) -> Iterator[bool]:
        if not self.directory.is_dir():  # no job was ever posted: leave the store's dir as is
            yield False
            return
        fd = self._open(".training.lock")
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing drops the lock

    def _open(self, name: str) -> int:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            return os.open(self.directory / name, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise _storage_error(exc) from None

    def remove(self, job_id: str) -> None:
        with self._locked(".board.lock"):
            self._path(job_id).unlink(missing_ok=True)

    @contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        fd = self._open(name)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, job: Job) -> None:
        temp = self.directory / f".tmp-{job.id}"
        try:
            temp.write_bytes(job.model_dump_json().encode())
            os.replace(temp, self._path(job.id))
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise _storage_error(exc) from None


def _storage_error(exc: OSError) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage("the job directory is full")
    return StorageUnavailable(f"the job directory is not writable: {exc.strerror}")
