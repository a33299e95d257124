"""PostgresBoard: jobs in the neuron_jobs table of the PostgreSQL store, seen by every replica.

Bodies stay on the disk of the replica that took them (Job.node); only that replica's
training process runs them. One job trains at a time across all replicas: the training slot
is a session advisory lock, which PostgreSQL drops by itself if the holder's connection dies.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from psycopg.types.json import Jsonb

from ..store.postgres import TRAINING_LOCK, PostgresStore
from .board import Board, Change
from .job import Job


class PostgresBoard(Board):
    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def add(self, job: Job) -> None:
        with self._store.connection() as conn:
            conn.execute(
                "INSERT INTO neuron_jobs (id, created_at, state, job) VALUES (%s, %s, %s, %s)",
                (job.id, job.created_at, job.state, Jsonb(job.model_dump(mode="json"))),
            )

    def get(self, job_id: str) -> Job | None:
        with self._store.connection() as conn:
            row = conn.execute("SELECT job FROM neuron_jobs WHERE id = %s", (job_id,)).fetchone()
        return None if row is None else Job.model_validate(row[0])

    def recent(self, limit: int) -> list[Job]:
        with self._store.connection() as conn:
            rows = conn.execute(
                "SELECT job FROM neuron_jobs ORDER BY created_at DESC LIMIT %s", (limit,)
            ).fetchall()
        return [Job.model_validate(row[0]) for row in rows]

    def update(self, job_id: str, change: Change) -> Job | None:
        with self._store.connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT job FROM neuron_jobs WHERE id = %s FOR UPDATE", (job_id,)
            ).fetchone()
            if row is None:
                return None
            job = Job.model_validate(row[0])
            changed = change(job)
            if changed is None or changed == job:
                return job
            conn.execute(
                "UPDATE neuron_jobs SET state = %s, job = %s WHERE id = %s",
                (changed.state, Jsonb(changed.model_dump(mode="json")), job_id),
            )
            return changed

    @contextmanager
    def training_slot(self) -> Iterator[bool]:
        with self._store.connection() as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (TRAINING_LOCK,)).fetchone()
            yield bool(row and row[0])
            # closing the connection (the store's own, fresh one) releases the lock

    def remove(self, job_id: str) -> None:
        with self._store.connection() as conn:
            conn.execute("DELETE FROM neuron_jobs WHERE id = %s", (job_id,))
