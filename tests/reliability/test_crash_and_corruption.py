"""Crashes in the middle of a save, and damaged model files found at start-up."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from service.errors import CorruptModel
from service.model.neuron import Neuron, classic_training_set, train
from service.serving import ModelServer
from service.settings import Settings
from service.store import TEMP_PREFIX, ModelStore, TrainingMetadata, canonical, decode
from tests.factories import training_metadata
from tests.integration.server import Gunicorn
from tests.metrics_text import sample

from . import crash_saver
from .conftest import Record

KILLS = 120
MAX_SECONDS = 90.0


def test_sigkill_in_the_middle_of_saving_never_leaves_a_partial_model(
    tmp_path: Path, record: Record
) -> None:
    """A process saving in a loop is SIGKILLed at random moments; each restart must recover."""
    model_dir = tmp_path / "model"
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(["tests.reliability.crash_saver"])
    rng = random.Random(5)
    settings = Settings(model_dir=model_dir, keep_versions=3)
    temp_left = versions_lost = restarts = 0
    started = time.monotonic()
    newest = 0
    for kill in range(KILLS):
        assert time.monotonic() - started < MAX_SECONDS, f"only {kill} kills in time"
        ready = forkserver.Event()
        child = forkserver.Process(
            target=crash_saver.save_forever, args=(str(model_dir), kill, ready), daemon=True
        )
        child.start()
        try:
            assert ready.wait(timeout=10)
            time.sleep(rng.uniform(0, 0.03))
        finally:
            child.kill()  # SIGKILL
            child.join(timeout=10)
        assert child.exitcode == -signal.SIGKILL
        temp_left += any(p.name.startswith(TEMP_PREFIX) for p in model_dir.iterdir())
        # A fresh start, as a worker does it: clean temp files, load the newest valid version.
        server = ModelServer(settings)
        loaded = server.start()
        restarts += 1
        names = sorted(p.name for p in model_dir.iterdir())
        stored = ModelStore(model_dir).versions()
        assert not [n for n in names if n.startswith(TEMP_PREFIX)], names
        assert not [n for n in names if n.endswith(".corrupt")], names
        assert loaded.version == stored[0] == ModelStore(model_dir).pointer()
        for version in stored:
            decode((model_dir / f"model-{version:08d}.json").read_bytes())
        versions_lost += loaded.version < newest
        newest = loaded.version
    record(
        load=f"{KILLS} SIGKILLs of a process saving in a loop, each followed by a fresh start",
        faults=f"kill at a random moment; {temp_left} kills caught a temp file mid-write",
        failures=f"{restarts - KILLS} failed starts, 0 partial or corrupt files, "
        f"{versions_lost} versions lost",
        kills=KILLS,
        temp_files_left=temp_left,
        newest_version=newest,
    )
    assert versions_lost == 0
    assert temp_left > 0, "no kill landed in the middle of a write: the test proved nothing"


def _metadata() -> TrainingMetadata:
    return training_metadata(iterations=100, initial_loss=0.2, duration_seconds=0.0)


def _resign(raw: bytes, change: Callable[[dict], None]) -> bytes:
    """Change the document and give it a valid checksum, so that only the schema can object."""
    payload = json.loads(raw)
    payload.pop("checksum")
    change(payload)
    digest = hashlib.sha256(canonical(payload)).hexdigest()
    payload["checksum"] = {"algorithm": "sha256", "value": digest}
    return json.dumps(payload, sort_keys=True, indent=2).encode() + b"\n"


def _unreadable(path: Path) -> None:
    path.unlink()
    path.mkdir()  # reading it fails with EISDIR, even for root


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "tampered weight": lambda p: p.write_bytes(
        re.sub(rb"(\"weights\": \[\s+)-?\d", rb"\g<1>7", p.read_bytes(), count=1)
    ),
    "garbage": lambda p: p.write_bytes(os.urandom(700)),
    "wrong schema (valid checksum)": lambda p: p.write_bytes(
        _resign(p.read_bytes(), lambda d: d.update(format_version=2))
    ),
    "weights not matching n_inputs (valid checksum)": lambda p: p.write_bytes(
        _resign(p.read_bytes(), lambda d: d.update(weights=[1.0]))
    ),
    "other version's content": lambda p: p.write_bytes(
        (p.parent / "model-00000001.json").read_bytes()
    ),
    "unreadable": _unreadable,
}


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory holding versions 1 and 2, to be copied and damaged per case."""
    directory = tmp_path_factory.mktemp("two") / "model"
    store = ModelStore(directory)
    inputs, targets = classic_training_set()
    store.save(train(inputs, targets, iterations=2000).neuron, _metadata())
    store.save(train(inputs, 1 - targets, iterations=2000).neuron, _metadata())
    return directory


_damage_results: list[tuple[str, bool]] = []


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_newest_version_is_quarantined_and_the_previous_served(
    tmp_path: Path, two_versions: Path, kind: str
) -> None:
    server = Gunicorn(tmp_path / "s")
    server.model_dir.parent.mkdir(parents=True)
    subprocess.run(["cp", "-a", str(two_versions), str(server.model_dir)], check=True)
    expected = ModelStore(server.model_dir).read(1).neuron
    newest = server.model_dir / "model-00000002.json"
    DAMAGE[kind](newest)
    with pytest.raises(CorruptModel):
        ModelStore(server.model_dir).read(2)
    server.start()
    try:
        answers = [server.post("/predict", {"inputs": [[1, 0, 0]]}).json() for _ in range(10)]
        metrics = server.get("/metrics").text
    finally:
        server.stop()
    assert {a["model_version"] for a in answers} == {1}
    assert answers[0]["predictions"][0] == expected(np.array([[1.0, 0, 0]]))[0]
    assert not newest.exists()
    assert Path(f"{newest}.corrupt").exists()
    assert (server.model_dir / "CURRENT").read_text().strip() == "1"
    assert sample(metrics, "neuron_model_load_failures_total") == 1.0
    logged = [line for line in server.log_lines() if "quarantined" in line["msg"]]
    assert len(logged) == 1 and logged[0]["level"] == "error"
    _damage_results.append((kind, True))


def test_damage_summary(record: Record) -> None:
    record(
        load=f"{len(DAMAGE)} gunicorn starts, each on a damaged newest version",
        faults=", ".join(DAMAGE),
        failures=f"{len(DAMAGE) - len(_damage_results)} cases not quarantined or not "
        "falling back to version 1",
    )
    assert len(_damage_results) == len(DAMAGE)


def test_a_new_version_number_is_never_reused_after_quarantine(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "model")
    weights = Neuron(np.ones((3, 1)))
    store.save(weights, _metadata())
    store.save(weights, _metadata())
    store.path(2).write_bytes(b"{}")
    assert store.load_latest_valid() is not None
    assert store.save(weights, _metadata()).version == 3
