"""PostgresStore: model versions in one PostgreSQL table, shared by replicas on many hosts.

Tables (created and upgraded by the service itself, see MIGRATIONS):
  neuron_models          one row per version: the exact bytes document.encode() wrote
  neuron_state           one row: the last version number given out and the serving version
  neuron_schema_version  the migrations applied
  neuron_jobs            training jobs (service/jobs/pgboard.py reads and writes them)

Writers serialise on a session advisory lock (lock()); version numbers come from
neuron_state.last_version, so a number is never given out twice. Every process polls the one
small neuron_state row on a connection of its own in a background thread, so pointer() is a
memory read, never a query per request, and a version promoted anywhere is seen within
POLL_SECONDS.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from ..errors import CorruptModel, InsufficientStorage, NotFound, StorageUnavailable
from ..model.neuron import Neuron
from .base import OnCorrupt, Store
from .document import ModelRecord, TrainingMetadata, decode, encode, new_document

log = logging.getLogger("neuron.store")

POLL_SECONDS = 0.25
CONNECT_TIMEOUT_SECONDS = 2
# A writer waits this long for the writers' lock, then answers 503: a holder cut off by the
# network keeps the lock until the server notices, and a request must not outwait gunicorn.
LOCK_TIMEOUT_SECONDS = 5.0
# Session advisory lock keys: "neuron" in ASCII for the writers, plus one for migrations.
WRITERS_LOCK = 0x6E6575726F6E
SCHEMA_LOCK = WRITERS_LOCK + 1
TRAINING_LOCK = WRITERS_LOCK + 2  # held by the one training process running a job
# libpq options: a dead network is noticed in seconds, not at the kernel's 2-hour default.
CONNECT_OPTIONS: dict[str, Any] = {
    "connect_timeout": CONNECT_TIMEOUT_SECONDS,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "tcp_user_timeout": 5000,
    "application_name": "neuron-service",
}

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE neuron_models (
            version integer PRIMARY KEY CHECK (version >= 1),
            document bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            quarantined_at timestamptz,
            quarantine_reason text
        )""",
        """CREATE TABLE neuron_state (
            id boolean PRIMARY KEY DEFAULT true CHECK (id),
            last_version integer NOT NULL DEFAULT 0,
            serving integer,
            changed_at timestamptz NOT NULL DEFAULT now()
        )""",
        "INSERT INTO neuron_state DEFAULT VALUES",
    ),
    2: (
        """CREATE TABLE neuron_jobs (
            id text PRIMARY KEY,
            created_at text NOT NULL,
            state text NOT NULL,
            job jsonb NOT NULL
        )""",
        "CREATE INDEX neuron_jobs_created ON neuron_jobs (created_at DESC)",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)

_STATE = """SELECT serving, ARRAY(
    SELECT version FROM neuron_models WHERE quarantined_at IS NULL ORDER BY version DESC
) FROM neuron_state"""
_VALID = "SELECT version, document FROM neuron_models WHERE quarantined_at IS NULL"
_PRUNE = """DELETE FROM neuron_models WHERE quarantined_at IS NULL AND version NOT IN (
    SELECT version FROM neuron_models WHERE quarantined_at IS NULL
    ORDER BY version DESC LIMIT %s)"""

Connection = psycopg.Connection[Any]


class PostgresStore(Store):
    """The Store interface on PostgreSQL; see the module's docstring."""

    def __init__(
        self,
        url: str,
        keep: int = 5,
        on_corrupt: OnCorrupt | None = None,
        on_up: Callable[[bool], None] | None = None,
        poll_seconds: float = POLL_SECONDS,
        watch: bool = True,
        lock_timeout_seconds: float = LOCK_TIMEOUT_SECONDS,
    ) -> None:
        self.url = url
        self.keep = keep
        self._on_corrupt = on_corrupt
        self._on_up = on_up
        self._poll_seconds = poll_seconds
        self._lock_timeout_ms = max(1, round(lock_timeout_seconds * 1000))
        self._schema_lock = threading.Lock()
        self._schema_ready = False
        self._held = threading.local()  # the connection holding lock() in this thread
        # What the watcher last saw, replaced under _state_lock; _writes counts local saves.
        self._state_lock = threading.Lock()
        self._serving: int | None = None
        self._kept: list[int] = []
        self._writes = 0
        self._up: bool | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        if watch:
            self._watcher = threading.Thread(target=self._watch, name="store-watch", daemon=True)
            self._watcher.start()

    def close(self) -> None:
        """Stop the watcher thread (tests; a worker simply exits)."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=10)

    # -- reading -----------------------------------------------------------------------------

    def versions(self) -> list[int]:
        """Stored (not quarantined) versions, newest first, as last seen."""
        return list(self._kept)

    def pointer(self) -> int | None:
        """The serving version as last polled: a memory read."""
        return self._serving

    def up(self) -> bool:
        return bool(self._up)

    def read(self, version: int) -> ModelRecord:
        with self._connection() as conn:
            row = conn.execute(f"{_VALID} AND version = %s", (version,)).fetchone()
        if row is None:
            raise NotFound(f"model version {version} is not stored")
        return _verified(version, bytes(row[1]))

    def load_latest_valid(self) -> ModelRecord | None:
        with self._connection() as conn:
            rows = conn.execute(f"{_VALID} ORDER BY version DESC").fetchall()
        for version, raw in rows:
            try:
                return _verified(version, bytes(raw))
            except CorruptModel as exc:
                self.quarantine(version, str(exc))
        return None

    def quarantine(self, version: int, reason: str) -> None:
        """Mark a damaged version's row quarantined (kept for inspection, never served)."""
        try:
            with self._connection() as conn:
                cursor = conn.execute(
                    "UPDATE neuron_models SET quarantined_at = now(), quarantine_reason = %s "
                    "WHERE version = %s AND quarantined_at IS NULL",
                    (reason, version),
                )
        except StorageUnavailable as exc:
            log.error("could not quarantine version %d: %s", version, exc.message)
            return
        if cursor.rowcount == 0:
            return  # another process marked it first
        log.error("model version %d is damaged (%s): quarantined", version, reason)
        if self._on_corrupt is not None:
            self._on_corrupt(version, reason)

    # -- writing -----------------------------------------------------------------------------

    @contextmanager
    def lock(self) -> Iterator[None]:
        """The writers' advisory lock, held by a connection of its own; closing releases it."""
        with self._translated():
            conn = self._connect()
        try:
            with self._translated():
                conn.execute(f"SET lock_timeout = {self._lock_timeout_ms}".encode())
                conn.execute("SELECT pg_advisory_lock(%s)", (WRITERS_LOCK,))
                conn.execute(b"SET lock_timeout = 0")
            self._held.conn = conn
            yield
        finally:
            self._held.conn = None
            conn.close()

    def save_locked(
        self,
        neuron: Neuron,
        training: TrainingMetadata,
        feature_names: list[str] | None = None,
    ) -> ModelRecord:
        """Number, insert, point and prune in one transaction."""
        with self._connection() as conn, conn.transaction():
            row = conn.execute(
                "UPDATE neuron_state SET last_version = last_version + 1 RETURNING last_version"
            ).fetchone()
            assert row is not None  # the migration inserts the one row
            version = int(row[0])
            raw = encode(new_document(version, neuron, training, feature_names))
            conn.execute(
                "INSERT INTO neuron_models (version, document) VALUES (%s, %s)", (version, raw)
            )
            conn.execute("UPDATE neuron_state SET serving = %s, changed_at = now()", (version,))
            conn.execute(_PRUNE, (self.keep,))
            kept = self._kept_now(conn)
        self._wrote(version, kept)
        return decode(raw)  # what a reader will get: the same verified bytes

    def point_to_latest_locked(self) -> ModelRecord | None:
        """Under lock(): make the serving pointer name the newest valid version."""
        record = self.load_latest_valid()
        with self._connection() as conn:
            if record is not None:
                conn.execute(
                    "UPDATE neuron_state SET serving = %s, changed_at = now() "
                    "WHERE serving IS DISTINCT FROM %s",
                    (record.version, record.version),
                )
            kept = self._kept_now(conn)
        self._wrote(None if record is None else record.version, kept)
        return record

    # -- connections -------------------------------------------------------------------------

    def connection(self) -> AbstractContextManager[Connection]:
        """A connection of this store's (migrated, errors translated) for its other tables."""
        return self._connection()

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """The connection holding lock() in this thread, or a fresh one closed afterwards."""
        held: Connection | None = getattr(self._held, "conn", None)
        with self._translated():
            if held is not None:
                yield held
                return
            conn = self._connect()
            try:
                yield conn
            finally:
                conn.close()

    def _connect(self) -> Connection:
        conn = psycopg.connect(self.url, autocommit=True, **CONNECT_OPTIONS)
        try:
            self._ensure_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """psycopg's errors as the service's: unreachable is 503, a full disk 507."""
        try:
            yield
        except pg_errors.UndefinedTable as exc:
            self._schema_ready = False  # e.g. a database recreated empty: migrate again
            self._set_up(False)
            raise StorageUnavailable("the model store's tables are missing") from exc
        except pg_errors.LockNotAvailable as exc:
            raise StorageUnavailable(
                "the model store is busy: another replica holds the writers' lock; try again"
            ) from exc
        except (pg_errors.DiskFull, pg_errors.OutOfMemory) as exc:
            raise InsufficientStorage("the model store is full; the model was not saved") from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self._set_up(False)
            raise StorageUnavailable(f"the model store is unreachable: {_first_line(exc)}") from exc
        self._set_up(True)

    def _ensure_schema(self, conn: Connection) -> None:
        """Apply the migrations this database lacks, once per process, under an advisory lock."""
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS neuron_schema_version ("
                    "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                row = conn.execute("SELECT max(version) FROM neuron_schema_version").fetchone()
                applied = int(row[0]) if row and row[0] is not None else 0
                for version in sorted(v for v in MIGRATIONS if v > applied):
                    for statement in MIGRATIONS[version]:
                        conn.execute(statement.encode())
                    conn.execute(
                        "INSERT INTO neuron_schema_version (version) VALUES (%s)", (version,)
                    )
                    log.info("model store schema upgraded to version %d", version)
                if applied > SCHEMA_VERSION:
                    log.warning(
                        "the model store's schema (%d) is newer than this service's (%d)",
                        applied,
                        SCHEMA_VERSION,
                    )
            self._schema_ready = True

    # -- watching ----------------------------------------------------------------------------

    def _watch(self) -> None:
        """Poll the one state row until close(); reconnect by itself after an outage."""
        conn: Connection | None = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = self._connect()
                writes = self._writes
                row = conn.execute(_STATE).fetchone()
                if row is not None:
                    self._observed(writes, row[0], list(row[1]))
                self._set_up(True)
            except Exception as exc:  # whatever it is, the watcher must live on
                if self._up is not False:
                    log.error("model store unreachable: %s", _first_line(exc))
                self._set_up(False)
                if isinstance(exc, pg_errors.UndefinedTable):
                    self._schema_ready = False
                if conn is not None:
                    conn.close()
                conn = None
            self._stop.wait(self._poll_seconds)
        if conn is not None:
            conn.close()

    def _observed(self, writes: int, serving: int | None, kept: list[int]) -> None:
        with self._state_lock:
            if writes != self._writes:
                return  # a local save landed during the poll: its state is newer than ours
            self._serving, self._kept = serving, kept

    def _wrote(self, serving: int | None, kept: list[int]) -> None:
        """This process changed the store: serve its writes before the next poll."""
        with self._state_lock:
            self._writes += 1
            self._serving, self._kept = serving, kept

    def _kept_now(self, conn: Connection) -> list[int]:
        rows = conn.execute(
            "SELECT version FROM neuron_models WHERE quarantined_at IS NULL ORDER BY version DESC"
        ).fetchall()
        return [int(version) for (version,) in rows]

    def _set_up(self, up: bool) -> None:
        if self._up is up:
            return
        if up and self._up is False:
            log.info("model store reachable again")
        self._up = up
        if self._on_up is not None:
            self._on_up(up)


def _verified(version: int, raw: bytes) -> ModelRecord:
    record = decode(raw)
    if record.version != version:
        raise CorruptModel(f"row of version {version} holds version {record.version}")
    return record


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
