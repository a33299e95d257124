"""ModelStore: versions, checksums, atomic writes, locking, pruning, quarantine."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from service.errors import CorruptModel, InsufficientStorage, NotFound, StorageUnavailable
from service.model.neuron import Neuron, Scaling
from service.store import ModelStore, Validation, canonical, data_digest, decode

from .factories import training_metadata

metadata = training_metadata


def neuron(*weights: float) -> Neuron:
    return Neuron(np.array(weights, dtype=float).reshape(-1, 1))


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "model", keep=3)


def test_save_then_read_round_trips_bit_exactly(store: ModelStore) -> None:
    weights = (0.1, -1 / 3, 9.672993027736892, 5e-324)
    saved = store.save(neuron(*weights), metadata())
    loaded = store.read(saved.version)
    assert loaded.neuron.weights.tobytes() == neuron(*weights).weights.tobytes()
    assert loaded.document == saved.document
    assert store.pointer() == saved.version == 1


def test_document_carries_format_version_and_a_checksum_of_the_canonical_payload(
    store: ModelStore,
) -> None:
    saved = store.save(neuron(1.0, 2.0), metadata())
    document = json.loads(store.path(saved.version).read_text())
    assert document["format"] == "neuron-model"
    assert document["format_version"] == 1
    assert document["n_inputs"] == 2
    assert document["checksum"]["algorithm"] == "sha256"
    assert set(document["training"]) >= {
        "seed",
        "iterations",
        "learning_rate",
        "loss",
        "data_sha256",
        "trained_at",
    }


def test_versions_are_consecutive_and_only_the_newest_are_kept(store: ModelStore) -> None:
    versions = [store.save(neuron(float(i)), metadata()).version for i in range(5)]
    assert versions == [1, 2, 3, 4, 5]
    assert store.versions() == [5, 4, 3]
    assert sorted(p.name for p in store.directory.iterdir() if p.name.startswith("model-")) == [
        "model-00000003.json",
        "model-00000004.json",
        "model-00000005.json",
    ]


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw.replace(b'"loss": 0.1', b'"loss": 0.2'),  # tampered value
        lambda raw: raw[: len(raw) // 2],  # truncated
        lambda raw: b"",  # empty
        lambda raw: b"\xff\xfe not json",  # garbage
        lambda raw: raw.replace(b'"format_version": 1', b'"format_version": 9'),  # wrong schema
    ],
)
def test_a_damaged_newest_version_is_quarantined_and_the_previous_served(
    store: ModelStore, damage
) -> None:
    seen: list[int] = []
    store = ModelStore(
        store.directory, keep=3, on_corrupt=lambda version, reason: seen.append(version)
    )
    store.save(neuron(1.0), metadata())
    store.save(neuron(2.0), metadata())
    path = store.path(2)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CorruptModel):
        store.read(2)
    record = store.load_latest_valid()
    assert record is not None and record.version == 1
    assert seen == [2]
    assert not path.exists() and Path(f"{path}.corrupt").exists()
    # A quarantined number is never given out again.
    assert store.save(neuron(3.0), metadata()).version == 3


def test_any_single_byte_change_is_detected(store: ModelStore) -> None:
    store.save(neuron(0.25, -0.5, 1.5), metadata())
    raw = store.path(1).read_bytes()
    for position in range(0, len(raw), 7):
        flipped = bytearray(raw)
        flipped[position] ^= 0x01
        try:
            decode(bytes(flipped))
        except CorruptModel:
            continue
        # Only whitespace changes may keep the same meaning; then the content must be identical.
        assert json.loads(bytes(flipped)) == json.loads(raw)


def test_read_of_a_missing_version_is_not_found(store: ModelStore) -> None:
    with pytest.raises(NotFound):
        store.read(42)


def test_concurrent_saves_never_lose_an_update(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "model", keep=100)
    results: list[int] = []

    def save(i: int) -> None:
        # A separate store object per thread, as separate workers would have.
        results.append(
            ModelStore(store.directory, keep=100).save(neuron(float(i)), metadata()).version
        )

    threads = [threading.Thread(target=save, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == list(range(1, 17))
    assert store.pointer() == 16
    assert store.load_latest_valid().version == 16  # type: ignore[union-attr]


def test_start_up_cleanup_removes_leftover_temp_files(store: ModelStore) -> None:
    store.save(neuron(1.0), metadata())
    leftover = store.directory / ".tmp-crashed"
    leftover.write_bytes(b'{"half": ')
    with store.lock():
        record = store.point_to_latest_locked()
    assert record is not None and record.version == 1
    assert not leftover.exists()


def test_pointer_is_repaired_to_the_newest_valid_version(store: ModelStore) -> None:
    store.save(neuron(1.0), metadata())
    store.save(neuron(2.0), metadata())
    store.path(2).write_bytes(b"{}")
    with store.lock():
        store.point_to_latest_locked()
    assert store.pointer() == 1


@pytest.mark.parametrize(
    ("err", "kind"),
    [(errno.ENOSPC, InsufficientStorage), (errno.EROFS, StorageUnavailable)],
)
def test_a_failed_write_leaves_nothing_behind(store: ModelStore, monkeypatch, err, kind) -> None:
    store.save(neuron(1.0), metadata())
    before = sorted(os.listdir(store.directory))

    def failing_fsync(fd: int) -> None:
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(kind):
        store.save(neuron(2.0), metadata())
    monkeypatch.undo()
    assert sorted(os.listdir(store.directory)) == before
    assert store.load_latest_valid().version == 1  # type: ignore[union-attr]
    assert store.pointer() == 1


def test_data_digest_depends_on_values_and_shape() -> None:
    a = np.arange(6.0).reshape(3, 2)
    y = np.ones((3, 1))
    assert data_digest(a, y) == data_digest(a.copy(), y.copy())
    assert data_digest(a, y) != data_digest(a.reshape(2, 3), y)
    assert data_digest(a, y) != data_digest(a + 1e-12, y)


# -- standardization, validation and feature names in the document ------------------------


def scaled_neuron() -> Neuron:
    return Neuron(
        np.array([[0.5], [-2.0]]), Scaling(np.array([1000.0, 0.25]), np.array([300.0, 0.125]))
    )


def test_scaling_and_feature_names_round_trip_and_apply_after_loading(store: ModelStore) -> None:
    validation = Validation(rows=10, loss=0.1, accuracy=0.9, baseline_accuracy=0.6)
    saved = store.save(
        scaled_neuron(), metadata(validation=validation, validation_fraction=0.25), ["a", "b"]
    )
    loaded = store.read(saved.version)
    assert loaded.document.feature_names == ["a", "b"]
    assert loaded.document.training.validation == validation
    assert loaded.document.scaling is not None
    assert loaded.document.scaling.mean == [1000.0, 0.25]
    rows = np.array([[1300.0, 0.0], [700.0, 0.5]])
    # by hand: ((1300-1000)/300, (0-0.25)/0.125) = (1, -2) -> 0.5 + 4 = 4.5; the other -> -0.5 - 4
    assert loaded.neuron(rows) == pytest.approx(1 / (1 + np.exp(-np.array([4.5, -4.5]))))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"mean": [\n      1000.0', b'"mean": [\n      1001.0'),
        (b'"scale": [\n      300.0', b'"scale": [\n      301.0'),
        (b'"accuracy": 0.9', b'"accuracy": 0.99'),
        (b'"a",', b'"c",'),
    ],
)
def test_checksum_covers_scaling_validation_and_feature_names(
    store: ModelStore, old: bytes, new: bytes
) -> None:
    validation = Validation(rows=10, loss=0.1, accuracy=0.9, baseline_accuracy=0.6)
    saved = store.save(scaled_neuron(), metadata(validation=validation), ["a", "b"])
    raw = store.path(saved.version).read_bytes()
    assert old in raw
    with pytest.raises(CorruptModel, match="checksum"):
        decode(raw.replace(old, new))


def test_a_document_written_before_these_fields_still_loads(store: ModelStore) -> None:
    """Format-1 documents of the first release have no scaling, validation or feature names."""
    payload = {
        "format": "neuron-model",
        "format_version": 1,
        "version": 1,
        "n_inputs": 2,
        "weights": [1.0, -1.0],
        "training": metadata().model_dump(
            mode="json",
            exclude={"accuracy", "baseline_accuracy", "validation_fraction", "validation"},
        ),
    }
    payload["checksum"] = {
        "algorithm": "sha256",
        "value": hashlib.sha256(canonical(payload)).hexdigest(),
    }
    record = decode(json.dumps(payload, sort_keys=True, indent=2).encode() + b"\n")
    assert record.neuron.scaling is None
    assert record.document.feature_names is None
    assert record.document.training.validation is None
    assert record.neuron(np.array([[3.0, 1.0]]))[0] == pytest.approx(1 / (1 + np.exp(-2.0)))


def test_scaling_or_names_of_the_wrong_length_are_never_written(store: ModelStore) -> None:
    with pytest.raises(ValueError, match="feature_names do not match"):
        store.save(neuron(1.0, 2.0), metadata(), ["only-one"])
    assert store.versions() == []
