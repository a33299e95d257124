"""PostgresStore against a real PostgreSQL: every guarantee the directory store gives, and more."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest

from service.errors import CorruptModel, NotFound, StorageUnavailable
from service.store import decode
from service.store.current import CurrentModel
from service.store.postgres import MIGRATIONS, WRITERS_LOCK, PostgresStore

from .integration.server import ROOT
from .pg import PostgresCluster
from .test_store import hidden_neuron, metadata, neuron

# Every migration, each recorded once (the table's primary key would refuse a second).
APPLIED_ONCE = [(version,) for version in sorted(MIGRATIONS)]


@pytest.fixture
def stores() -> Iterator[list[PostgresStore]]:
    """Stores made by a test, closed (watcher stopped) afterwards."""
    made: list[PostgresStore] = []
    yield made
    for store in made:
        store.close()


def open_store(stores: list[PostgresStore], url: str, **kwargs) -> PostgresStore:
    store = PostgresStore(url, **{"keep": 3, **kwargs})
    stores.append(store)
    return store


def sql(url: str, query: str, *params) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query.encode(), params or None)
        return cursor.fetchall() if cursor.description else []


def wait_for(predicate, timeout: float = 5.0) -> float:
    """Seconds until predicate() held; fails the test past timeout."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout} s")
        time.sleep(0.01)
    return time.monotonic() - started


def test_save_then_read_round_trips_bit_exactly(pg_url: str, stores) -> None:
    store = open_store(stores, pg_url, watch=False)
    weights = (0.1, -1 / 3, 9.672993027736892, 5e-324)
    saved = store.save(neuron(*weights), metadata())
    loaded = store.read(saved.version)
    assert loaded.neuron.weights.tobytes() == neuron(*weights).weights.tobytes()
    assert loaded.document == saved.document
    assert store.pointer() == saved.version == 1
    # The row holds exactly the bytes the directory store would have written to its file.
    (raw,) = sql(pg_url, "SELECT document FROM neuron_models WHERE version = 1")[0]
    assert decode(bytes(raw)).document == saved.document
    assert json.loads(bytes(raw))["checksum"]["algorithm"] == "sha256"


def test_versions_are_consecutive_and_only_the_newest_are_kept(pg_url: str, stores) -> None:
    store = open_store(stores, pg_url, watch=False)
    versions = [store.save(neuron(float(i)), metadata()).version for i in range(5)]
    assert versions == [1, 2, 3, 4, 5]
    assert store.versions() == [5, 4, 3]
    assert sql(pg_url, "SELECT version FROM neuron_models ORDER BY version") == [(3,), (4,), (5,)]
    with pytest.raises(NotFound):
        store.read(1)


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw.replace(b'"loss": 0.1', b'"loss": 0.2'),  # tampered value
        lambda raw: raw.replace(b'"version": 2', b'"version": 1'),  # another version's number
        lambda raw: raw[: len(raw) // 2],  # truncated
        lambda raw: b"",  # empty
        lambda raw: b"\xff\xfe not json",  # garbage
    ],
)
def test_a_tampered_row_is_caught_quarantined_and_the_previous_served(
    pg_url: str, stores, damage
) -> None:
    seen: list[int] = []
    store = open_store(stores, pg_url, watch=False, on_corrupt=lambda v, r: seen.append(v))
    store.save(neuron(1.0), metadata())
    store.save(neuron(2.0), metadata())
    (raw,) = sql(pg_url, "SELECT document FROM neuron_models WHERE version = 2")[0]
    sql(pg_url, "UPDATE neuron_models SET document = %s WHERE version = 2", damage(bytes(raw)))
    with pytest.raises(CorruptModel):
        store.read(2)
    record = store.load_latest_valid()
    assert record is not None and record.version == 1
    assert seen == [2]
    rows = sql(pg_url, "SELECT version FROM neuron_models WHERE quarantined_at IS NOT NULL")
    assert rows == [(2,)]
    with pytest.raises(NotFound):
        store.read(2)  # quarantined: neither served nor retried
    assert store.save(neuron(3.0), metadata()).version == 3  # a number is never reused


def test_concurrent_saves_from_separate_stores_never_lose_an_update(pg_url: str, stores) -> None:
    results: list[int] = []
    writers = [open_store(stores, pg_url, keep=100, watch=False) for _ in range(8)]

    def save(i: int) -> None:
        for _ in range(3):
            results.append(writers[i].save(neuron(float(i)), metadata()).version)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == list(range(1, 25))
    reader = open_store(stores, pg_url, keep=100, watch=False)
    assert reader.load_latest_valid().version == 24  # type: ignore[union-attr]
    assert sql(pg_url, "SELECT serving, last_version FROM neuron_state") == [(24, 24)]


def test_schema_is_created_once_and_upgrading_again_changes_nothing(pg_url: str, stores) -> None:
    for _ in range(3):
        open_store(stores, pg_url, watch=False).load_latest_valid()
    assert sql(pg_url, "SELECT version FROM neuron_schema_version") == APPLIED_ONCE
    assert sql(pg_url, "SELECT count(*) FROM neuron_state") == [(1,)]


RACER = """
import sys, time
from pathlib import Path
from service.serving import ModelServer
from service.settings import Settings
go = float(sys.argv[2])
time.sleep(max(0.0, go - time.time()))
server = ModelServer(Settings(store_url=sys.argv[1], model_dir=Path(sys.argv[3])))
record = server.start()
print(record.version, record.document.training.source, record.neuron.weights.tobytes().hex())
"""


def test_default_model_is_trained_exactly_once_when_processes_race(
    pg_url: str, tmp_path: Path
) -> None:
    go = time.time() + 3.0  # every process imports first, then all start at once
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, pg_url, str(go), str(tmp_path / f"m{i}")],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(6)
    ]
    outputs = [racer.communicate(timeout=60) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), outputs
    answers = {out.split()[0] + " " + out.split()[1] + " " + out.split()[2] for out, _ in outputs}
    assert len(answers) == 1, answers
    assert answers.pop().startswith("1 default ")
    rows = sql(pg_url, "SELECT version FROM neuron_models")
    assert rows == [(1,)]
    assert sql(pg_url, "SELECT version FROM neuron_schema_version") == APPLIED_ONCE


def test_a_version_saved_elsewhere_is_served_within_a_second(pg_url: str, stores) -> None:
    writer = open_store(stores, pg_url, watch=False)
    writer.save(neuron(1.0), metadata())
    reader = open_store(stores, pg_url)
    current = CurrentModel(reader)
    wait_for(lambda: reader.pointer() == 1)
    assert current.get().version == 1
    writer.save(neuron(2.0), metadata())
    seconds = wait_for(lambda: current.get().version == 2, timeout=1.0)
    assert current.get().neuron.weights[0, 0] == 2.0
    assert seconds < 1.0
    assert reader.versions() == [2, 1]


def test_a_process_serves_its_own_write_at_once(pg_url: str, stores) -> None:
    store = open_store(stores, pg_url, poll_seconds=30.0)  # the poll would take 30 s
    store.save(neuron(1.0), metadata())
    current = CurrentModel(store)
    assert current.get().version == 1
    current.set(store.save(neuron(2.0), metadata()))
    assert current.get().version == 2
    assert store.pointer() == 2


def test_serving_asks_the_database_nothing_per_prediction(
    pg_url: str, stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(stores, pg_url, watch=False)
    store.save(neuron(1.0), metadata())
    current = CurrentModel(store)
    assert current.get().version == 1
    connects: list[object] = []
    real = psycopg.connect
    monkeypatch.setattr(psycopg, "connect", lambda *a, **k: connects.append(a) or real(*a, **k))
    for _ in range(1000):
        current.get()
    assert connects == []


def test_outage_keeps_the_held_model_and_refuses_writes_then_catches_up(
    pg_private: PostgresCluster, stores
) -> None:
    url = pg_private.create_database()
    states: list[bool] = []
    store = open_store(stores, url, on_up=states.append, poll_seconds=0.1)
    store.save(neuron(1.0), metadata())
    current = CurrentModel(store)
    assert current.get().version == 1 and store.up()

    pg_private.stop()
    wait_for(lambda: not store.up(), timeout=3)
    for _ in range(200):
        assert current.get().version == 1  # answered from memory, the store is down
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as refused:
        store.save(neuron(2.0), metadata())
    assert refused.value.status == 503 and time.monotonic() - started < 5
    assert store.versions() == [1]

    pg_private.start()
    wait_for(store.up, timeout=5)
    other = open_store(stores, url, watch=False)
    assert other.save(neuron(3.0), metadata()).version == 2
    wait_for(lambda: current.get().version == 2, timeout=3)
    assert states[:3] == [True, False, True]


def test_a_version_the_pointer_names_but_missing_falls_back(pg_url: str, stores) -> None:
    store = open_store(stores, pg_url, watch=False)
    store.save(neuron(1.0), metadata())
    store.save(neuron(2.0), metadata())
    sql(pg_url, "DELETE FROM neuron_models WHERE version = 2")
    assert CurrentModel(store).get().version == 1


def test_a_writer_waits_for_the_lock_a_bounded_time_then_answers_503(pg_url: str, stores) -> None:
    store = open_store(stores, pg_url, watch=False, lock_timeout_seconds=0.5)
    store.save(neuron(1.0), metadata())
    with psycopg.connect(pg_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (WRITERS_LOCK,))
        started = time.monotonic()
        with pytest.raises(StorageUnavailable) as busy:
            store.save(neuron(2.0), metadata())
        waited = time.monotonic() - started
    assert 0.4 < waited < 3 and "busy" in busy.value.message
    assert store.save(neuron(3.0), metadata()).version == 2  # released: writes go on


def test_a_model_with_bias_and_hidden_layer_is_served_alike_by_another_replica(
    pg_url: str, stores
) -> None:
    writer = open_store(stores, pg_url, watch=False)
    reader = open_store(stores, pg_url)
    current = CurrentModel(reader)
    writer.save(neuron(1.0, 2.0), metadata())
    wait_for(lambda: current.get().version == 1)
    original = hidden_neuron()
    writer.save(original, metadata(l2=0.3, refit=True))
    wait_for(lambda: current.get().version == 2, timeout=1.0)
    served = current.get()
    assert served.document.bias == -0.75 and served.document.hidden is not None
    rows = np.array([[1300.0, 0.0], [700.0, 0.5], [1.0, 1.0]])
    assert served.neuron(rows).tobytes() == original(rows).tobytes()
