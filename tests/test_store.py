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
from service.model.hidden import HiddenLayer
from service.model.neuron import Neuron, Scaling
from service.store import ModelStore, Validation, canonical, data_digest, decode
from service.store.directory import PinnedPointer

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


# -- the intercept and the hidden layer -------------------------------------------------------

DOCUMENTS_V1 = Path(__file__).parent / "data" / "documents-v1"


def hidden_neuron() -> Neuron:
    layer = HiddenLayer.draw(2, 3, seed=5)
    return Neuron(np.array([[0.5], [-2.0], [1.25]]), scaled_neuron().scaling, -0.75, layer)


def test_bias_and_hidden_layer_round_trip_as_stored_not_drawn_again(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = hidden_neuron()
    saved = store.save(original, metadata(l2=0.3, refit=True))
    # A load must never draw the layer again: a numpy release could draw it otherwise.
    monkeypatch.setattr(HiddenLayer, "draw", None)
    monkeypatch.setattr(np.random, "RandomState", None)
    loaded = store.read(saved.version).neuron
    assert loaded.bias == -0.75 and isinstance(loaded.hidden, HiddenLayer)
    assert loaded.hidden.weights.tobytes() == original.hidden.weights.tobytes()  # type: ignore[union-attr]
    assert loaded.hidden.biases.tobytes() == original.hidden.biases.tobytes()  # type: ignore[union-attr]
    rows = np.array([[1300.0, 0.0], [700.0, 0.5], [1.0, 1.0]])
    assert loaded(rows).tobytes() == original(rows).tobytes()
    document = store.read(saved.version).document
    assert document.training.l2 == 0.3 and document.training.refit is True
    assert document.hidden is not None and (document.hidden.units, document.hidden.seed) == (3, 5)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"bias": -0.75', b'"bias": -0.5'),
        (b'"seed": 5', b'"seed": 6'),
        (b"-0.9092324048562419", b"0.9092324048562419"),  # the layer's first bias
        (b"1.118983128973894", b"1.118983128973895"),  # its last weight
        (b'"l2": 0.3', b'"l2": 0.0'),
    ],
)
def test_checksum_covers_the_bias_and_the_hidden_layer(
    store: ModelStore, old: bytes, new: bytes
) -> None:
    raw = store.path(store.save(hidden_neuron(), metadata(l2=0.3)).version).read_bytes()
    assert old in raw
    with pytest.raises(CorruptModel, match="checksum"):
        decode(raw.replace(old, new))


@pytest.mark.parametrize(
    ("change", "defect"),
    [
        ({"n_inputs": 3}, "hidden.weights do not match n_inputs"),
        ({"weights": [1.0, 2.0]}, "weights do not match hidden.units"),
        ({"hidden": {"biases": [0.0]}}, "hidden.biases do not match hidden.units"),
        ({"hidden": {"units": 4}}, "hidden.weights rows do not match hidden.units"),
        ({"bias": None, "hidden": {"activation": "relu"}}, "unreadable"),
    ],
)
def test_a_hidden_layer_of_the_wrong_shape_is_refused(
    store: ModelStore, change: dict, defect: str
) -> None:
    payload = json.loads(store.path(store.save(hidden_neuron(), metadata()).version).read_bytes())
    del payload["checksum"]
    for key, value in change.items():
        if isinstance(value, dict):
            payload[key] |= value
        else:
            payload[key] = value
    payload["checksum"] = {
        "algorithm": "sha256",
        "value": hashlib.sha256(canonical(payload)).hexdigest(),
    }
    with pytest.raises(CorruptModel, match=defect):
        decode(json.dumps(payload, sort_keys=True, indent=2).encode() + b"\n")


def test_documents_written_before_the_intercept_load_and_predict_as_they_did() -> None:
    """Kept bytes of documents main wrote before this change, with the answers it gave."""
    expected = json.loads((DOCUMENTS_V1 / "predictions.json").read_text())
    assert len(expected["cases"]) == 2
    for case in expected["cases"]:
        record = decode((DOCUMENTS_V1 / case["document"]).read_bytes())
        assert record.document.bias is None and record.document.hidden is None
        assert record.document.training.l2 == 0.0 and record.document.training.refit is False
        predicted = record.neuron(np.array(case["inputs"], dtype=float))
        assert predicted.tolist() == case["predictions"]


def test_the_largest_hidden_layer_the_limits_allow_makes_a_document_of_about_2_mb(
    store: ModelStore,
) -> None:
    """The figure docs/settings.md gives for NEURON_MAX_HIDDEN_WEIGHTS' default (65,536)."""
    from service.settings import Settings

    weights = Settings.model_fields["max_hidden_weights"].default
    layer = HiddenLayer.draw(256, weights // 256, seed=1)
    saved = store.save(Neuron(np.ones((layer.units, 1)), None, 0.5, layer), metadata())
    size = store.path(saved.version).stat().st_size
    assert 1.5e6 < size < 2.5e6, size


def _held_under(directory: Path) -> list[str]:
    """What this process holds open under ``directory`` (other threads' files are elsewhere)."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own descriptor, another thread's)
            continue
        if target.startswith(str(directory)):
            held.append(target)
    return held


def test_the_pointer_follows_every_replacement_and_in_place_edit(tmp_path: Path) -> None:
    """PinnedPointer answers from a stat(2) while the file is the one it read: a writer's
    rename (even 300 back to back, where a freed inode number could come round again) and an
    operator's in-place edit are both seen at once, and it holds one descriptor, not more."""
    path = tmp_path / "CURRENT"
    pointer = PinnedPointer(path)
    assert pointer.read() is None  # absent
    for number in range(1, 301):
        temporary = tmp_path / f".tmp-{number}"
        temporary.write_text(f"{number}\n")
        os.replace(temporary, path)
        assert pointer.read() == pointer.read() == number
        assert _held_under(tmp_path) == [str(path)]  # the file it read, and no older one
    path.write_text("12345\n")  # in place: same inode, another size
    assert pointer.read() == 12345
    path.write_text("x\n")
    assert pointer.read() is None
    path.unlink()
    assert pointer.read() is None
