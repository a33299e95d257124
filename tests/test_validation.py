"""Held-out validation: the split, the scores and the baseline, against scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.metrics import accuracy_score, mean_squared_error

from service.model.neuron import Neuron
from service.model.validation import (
    AUTO_FRACTION,
    AUTO_MIN_PER_CLASS,
    classes,
    default_fraction,
    majority_class,
    score,
    stratified_split,
)


def column(*labels: float) -> np.ndarray:
    return np.array(labels, dtype=float).reshape(-1, 1)


def test_split_holds_out_the_fraction_of_each_class_disjointly_and_reproducibly() -> None:
    targets = column(*[0] * 40, *[1] * 60)
    training, held = stratified_split(targets, 0.25, seed=5)
    assert len(np.intersect1d(training, held)) == 0
    assert sorted([*training, *held]) == list(range(100))
    assert (targets[held, 0] == 0).sum() == 10 and (targets[held, 0] == 1).sum() == 15
    again = stratified_split(targets, 0.25, seed=5)
    assert np.array_equal(again[1], held)
    assert not np.array_equal(stratified_split(targets, 0.25, seed=6)[1], held)


def test_split_keeps_a_training_row_of_each_class_and_refuses_to_hold_out_nothing() -> None:
    targets = column(0, 0, 1)
    training, held = stratified_split(targets, 0.5, seed=1)
    assert set(classes(targets[training])) == {False, True}
    assert len(held) == 1
    with pytest.raises(ValueError, match="holds none out"):
        stratified_split(column(0, 1, 0, 1), 0.1, seed=1)


def test_split_reads_soft_targets_by_their_side_of_one_half() -> None:
    targets = column(*[0.2] * 8, *[0.9] * 8)
    _, held = stratified_split(targets, 0.25, seed=1)
    assert sorted(targets[held, 0].tolist()) == [0.2, 0.2, 0.9, 0.9]


def test_default_split_starts_at_the_documented_class_size() -> None:
    few = AUTO_MIN_PER_CLASS - 1
    assert default_fraction(column(*[0] * few, *[1] * 500)) == 0.0
    assert default_fraction(column(*[0] * AUTO_MIN_PER_CLASS, *[1] * 500)) == AUTO_FRACTION
    assert default_fraction(column(0, 1, 1, 0)) == 0.0  # the classic four rows


@pytest.mark.parametrize(
    "labels", [(0, 0, 1), (1, 1, 0), (0, 1), (1, 0, 1, 0), (1, 1, 1), (0.4, 0.6, 0.7)]
)
def test_majority_class_and_baseline_agree_with_dummy_classifier(labels: tuple[float, ...]) -> None:
    targets = column(*labels)
    hard = classes(targets).astype(int)
    dummy = DummyClassifier(strategy="most_frequent").fit(np.zeros((len(hard), 1)), hard)
    assert int(majority_class(targets)) == dummy.predict(np.zeros((1, 1)))[0]
    probe = column(1, 0, 0, 1, 1)
    scores = score(Neuron(np.zeros((1, 1))), np.ones((5, 1)), probe, majority_class(targets))
    assert scores.baseline_accuracy == dummy.score(np.zeros((5, 1)), classes(probe).astype(int))


def test_scores_agree_with_scikit_learn_metrics() -> None:
    rng = np.random.default_rng(2)
    inputs = rng.normal(size=(50, 3))
    targets = column(*(inputs[:, 0] + 0.3 * rng.normal(size=50) > 0))
    neuron = Neuron(np.array([[2.0], [0.5], [-0.1]]))
    scores = score(neuron, inputs, targets, majority=True)
    probabilities = 1 / (1 + np.exp(-(inputs @ neuron.weights)[:, 0]))
    assert scores.rows == 50
    assert scores.loss == pytest.approx(mean_squared_error(targets[:, 0], probabilities))
    assert scores.accuracy == accuracy_score(targets[:, 0], probabilities >= 0.5)
    assert scores.baseline_accuracy == pytest.approx(targets.mean())
