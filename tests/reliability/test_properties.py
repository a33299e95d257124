"""Hypothesis properties of the neuron and the store, for any input, not just the examples."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from service.errors import CorruptModel
from service.model.neuron import Neuron
from service.store import ModelStore, TrainingMetadata, decode
from tests.factories import training_metadata

from .conftest import Record

EXAMPLES = 300
FINITE = st.floats(allow_nan=False, allow_infinity=False)
WEIGHTS = st.integers(1, 8).flatmap(lambda n: hnp.arrays(np.float64, (n, 1), elements=FINITE))
_counts: dict[str, int] = {}


def _count(name: str) -> None:
    _counts[name] = _counts.get(name, 0) + 1


def _metadata() -> TrainingMetadata:
    return training_metadata()


@st.composite
def neuron_and_inputs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    weights = draw(WEIGHTS)
    rows = draw(st.integers(1, 20))
    inputs = draw(hnp.arrays(np.float64, (rows, weights.shape[0]), elements=FINITE))
    return weights, inputs


@settings(max_examples=EXAMPLES, deadline=None)
@given(neuron_and_inputs())
def test_any_finite_matrix_gives_one_probability_per_row(
    case: tuple[np.ndarray, np.ndarray],
) -> None:
    _count("neuron")
    weights, inputs = case
    with np.errstate(all="ignore"):
        probabilities = Neuron(weights)(inputs)
    assert probabilities.shape == (len(inputs),)
    assert np.isfinite(probabilities).all(), (weights, inputs, probabilities)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(WEIGHTS)
def test_save_then_load_round_trips_bit_exactly(weights: np.ndarray) -> None:
    _count("round trip")
    with tempfile.TemporaryDirectory() as directory:
        store = ModelStore(Path(directory), keep=2)
        saved = store.save(Neuron(weights), _metadata())
        fresh = ModelStore(Path(directory)).load_latest_valid()
    assert fresh is not None
    assert fresh.version == saved.version == 1
    assert fresh.neuron.weights.tobytes() == weights.tobytes()
    assert fresh.document == saved.document


def _sample_document() -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        store = ModelStore(Path(directory))
        weights = np.array([[9.672993027736892], [-0.2089942], [-4.629629]])
        record = store.save(Neuron(weights), _metadata())
        return store.path(record.version).read_bytes()


SAMPLE = _sample_document()


@settings(max_examples=EXAMPLES * 3, deadline=None)
@given(st.integers(0, len(SAMPLE) - 1), st.integers(1, 255))
def test_the_checksum_rejects_any_single_byte_change(position: int, delta: int) -> None:
    _count("byte change")
    damaged = bytearray(SAMPLE)
    damaged[position] = (damaged[position] + delta) % 256
    with pytest.raises(CorruptModel):
        decode(bytes(damaged))


def test_every_byte_position_and_bit_flip(record: Record) -> None:
    """Exhaustive companion of the property above: each byte, each of its 8 bit flips."""
    accepted = 0
    for position in range(len(SAMPLE)):
        for bit in range(8):
            damaged = bytearray(SAMPLE)
            damaged[position] ^= 1 << bit
            try:
                decode(bytes(damaged))
            except CorruptModel:
                continue
            accepted += 1
    record(
        load=f"Hypothesis: {_counts.get('neuron', 0)} neuron inputs, "
        f"{_counts.get('round trip', 0)} save/load round trips, "
        f"{_counts.get('byte change', 0)} random byte changes; "
        f"exhaustive: {len(SAMPLE) * 8} single-bit flips",
        faults="any finite matrix (to ±1.8e308), any finite weights (subnormals, -0.0), "
        "every single-bit flip of a stored document",
        failures=f"{accepted} damaged documents accepted",
    )
    assert accepted == 0
