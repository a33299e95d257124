"""Held-out validation: a seeded stratified split, scores, the majority-class baseline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .neuron import Matrix, Neuron, mse

Index = NDArray[np.intp]

AUTO_FRACTION = 0.25
AUTO_MIN_PER_CLASS = 20  # below this many rows in a class, a split leaves too few to judge by


def classes(targets: Matrix) -> NDArray[np.bool_]:
    """Each row's class: a target of 0.5 or more is class 1, as the predictions are read."""
    return np.asarray(targets[:, 0] >= 0.5)


def default_fraction(targets: Matrix) -> float:
    """AUTO_FRACTION once each class has AUTO_MIN_PER_CLASS rows, else no split."""
    ones = int(classes(targets).sum())
    return AUTO_FRACTION if min(ones, len(targets) - ones) >= AUTO_MIN_PER_CLASS else 0.0


def stratified_split(targets: Matrix, fraction: float, seed: int) -> tuple[Index, Index]:
    """(training rows, held-out rows): ``fraction`` of each class, drawn reproducibly by seed.

    Each class keeps at least one training row. Raises ValueError when nothing is held out.
    """
    rng = np.random.default_rng(seed)
    labels = classes(targets)
    held: list[Index] = []
    for label in (False, True):
        rows = rng.permutation(np.flatnonzero(labels == label))
        held.append(rows[: min(round(fraction * len(rows)), max(len(rows) - 1, 0))])
    validation = np.sort(np.concatenate(held))
    if len(validation) == 0:
        raise ValueError(f"validation_fraction {fraction:g} of {len(targets)} rows holds none out")
    training = np.setdiff1d(np.arange(len(targets)), validation)
    return training, validation


def majority_class(targets: Matrix) -> bool:
    """The more frequent class; a tie goes to class 0, as scikit-learn's DummyClassifier does."""
    return bool(classes(targets).sum() * 2 > len(targets))


@dataclass(frozen=True)
class Scores:
    rows: int
    loss: float
    accuracy: float
    baseline_accuracy: float  # of always answering the majority class, on the same rows


def accuracy(probabilities: Matrix, targets: Matrix) -> float:
    return float(np.mean((probabilities >= 0.5) == classes(targets)))


def score(neuron: Neuron, inputs: Matrix, targets: Matrix, majority: bool) -> Scores:
    """The neuron on raw rows, beside the constant answer ``majority``."""
    probabilities = neuron(inputs)
    return Scores(
        rows=len(targets),
        loss=mse(probabilities, targets[:, 0]),
        accuracy=accuracy(probabilities, targets),
        baseline_accuracy=float(np.mean(classes(targets) == majority)),
    )
