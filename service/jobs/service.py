"""Jobs: what the HTTP layer asks of training jobs — submit, read, list, cancel."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import IO

from ..errors import Conflict, NotFound, UnsupportedMediaType, validation_error
from ..schemas import retrain_settings
from ..serving import check_iterations
from ..settings import Settings
from ..store import ModelStore, Store
from .board import Board, DirectoryBoard
from .job import Job, is_id, new_id, now
from .spool import ENCODINGS, body_path, spool

CSV, JSON = "text/csv", "application/json"
DEFAULT_DIR = Path("var/jobs")  # on the PostgreSQL store, where nothing else says where


class Jobs:
    """Jobs of one store; bodies spooled under ``directory`` on this host (``node``)."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.board, self.directory = open_board(settings, store)
        # Whoever sees this directory can run the job: the host and the directory name it.
        self.node = f"{socket.gethostname()}:{self.directory.resolve()}"

    def submit(
        self,
        content_type: str,
        charset: str | None,
        encoding: str | None,
        query: dict[str, list[str]],
        body: IO[bytes],
    ) -> Job:
        """Check what costs nothing to check, spool the body, queue the job."""
        _check(content_type, charset, encoding, query, self.settings)
        job = Job(
            id=new_id(),
            created_at=now(),
            content_type=content_type,
            content_encoding=encoding,
            query=query,
            node=self.node,
            heartbeat_at=time.time(),
        )
        path = body_path(self.directory, job.id)
        size = spool(body, path, self.settings.max_job_body_bytes)
        try:
            self.board.add(job.moved(body_bytes=size))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return self.get(job.id)

    def get(self, job_id: str) -> Job:
        job = self.board.get(job_id) if is_id(job_id) else None
        if job is None:
            raise NotFound(f"no job {job_id[:64]!r}")
        return job

    def recent(self, limit: int = 50) -> list[Job]:
        return self.board.recent(limit)

    def states(self) -> list[str]:
        """The state of each recent job (for the neuron_training_jobs gauge)."""
        return [job.state for job in self.board.recent(2 * self.settings.keep_jobs)]

    def cancel(self, job_id: str) -> Job:
        """A queued job ends now; a running one stops at its next progress report."""
        self.get(job_id)
        job = self.board.update(job_id, _cancelled)
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        if job.ended and not job.state == "cancelled":
            raise Conflict(f"job {job_id} has already {job.state}: there is nothing to cancel")
        if job.state == "cancelled" and job.node == self.node:
            body_path(self.directory, job.id).unlink(missing_ok=True)
        return job


def open_board(settings: Settings, store: Store) -> tuple[Board, Path]:
    """The store's board and this host's job directory."""
    if isinstance(store, ModelStore):
        directory = settings.job_dir or store.directory / "jobs"
        return DirectoryBoard(directory), directory
    from ..store.postgres import PostgresStore  # psycopg only for those who use it
    from .pgboard import PostgresBoard

    assert isinstance(store, PostgresStore)
    return PostgresBoard(store), settings.job_dir or DEFAULT_DIR


def _cancelled(job: Job) -> Job | None:
    if job.state == "queued":
        return job.moved(state="cancelled", finished_at=now(), cancel_requested=True)
    if job.state == "running":
        return job.moved(cancel_requested=True)
    return None


def _check(
    content_type: str,
    charset: str | None,
    encoding: str | None,
    query: dict[str, list[str]],
    settings: Settings,
) -> None:
    if content_type not in (CSV, JSON):
        raise UnsupportedMediaType(f"send the training data as {CSV} or {JSON}")
    if content_type == CSV and (charset or "utf-8").lower() not in ("utf-8", "utf8"):
        raise UnsupportedMediaType("send text/csv as UTF-8")
    if encoding is not None and encoding not in ENCODINGS:
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding[:40]!r} is not accepted: send the body as it is, or "
            f"with one of {', '.join(ENCODINGS)}"
        )
    if content_type == CSV:
        # a bad query is refused before the body is read
        check_iterations(retrain_settings(query), settings)
    elif query:
        raise validation_error(
            "query parameters are read only with a text/csv body",
            ["query", next(iter(query))],
            "put training settings in the JSON body",
        )
