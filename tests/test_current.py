"""CurrentModel: every process notices a version saved by another."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.errors import NotReady
from service.model.neuron import Neuron
from service.store import ModelStore
from service.store.current import CurrentModel

from .test_store import metadata, neuron


def test_a_version_saved_elsewhere_is_served_on_the_next_call(tmp_path: Path) -> None:
    ours, theirs = ModelStore(tmp_path), ModelStore(tmp_path)
    swaps: list[int] = []
    current = CurrentModel(ours, on_swap=lambda record: swaps.append(record.version))
    theirs.save(neuron(1.0), metadata())
    assert current.get().version == 1
    assert current.get().version == 1
    theirs.save(neuron(2.0), metadata())
    record = current.get()
    assert record.version == 2
    assert record.neuron.weights[0, 0] == 2.0
    assert swaps == [1, 2]


def test_a_damaged_pointed_version_falls_back_and_is_not_retried(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.save(neuron(1.0), metadata())
    current = CurrentModel(store)
    assert current.get().version == 1
    store.save(neuron(2.0), metadata())
    store.path(2).write_text("{}")
    assert current.get().version == 1
    assert Path(f"{store.path(2)}.corrupt").exists()
    assert current.get().version == 1


def test_nothing_stored_is_not_ready(tmp_path: Path) -> None:
    with pytest.raises(NotReady):
        CurrentModel(ModelStore(tmp_path)).get()


def test_the_record_is_one_whole_model(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.save(Neuron(np.array([[1.0], [2.0]])), metadata())
    record = CurrentModel(store).get()
    assert record.neuron.n_inputs == record.document.n_inputs == 2
    assert record.document.weights == [1.0, 2.0]
