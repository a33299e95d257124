"""The article's next step: a fixed random hidden layer in front of the neuron.

Only the neuron on top is trained ("train the whole model by only training its last
layer"); the layer is drawn once from a seeded RNG and then stored with the model, never
drawn again on load, so a numpy release cannot change a served model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .neuron import Matrix, finite_sums

Activation = Literal["tanh"]


@dataclass(frozen=True)
class HiddenLayer:
    """n inputs -> ``units`` features: activation(x @ weights + biases). Call it with rows."""

    weights: Matrix  # shape (n_inputs, units)
    biases: Matrix  # shape (units,)
    activation: Activation = "tanh"
    seed: int = 0  # the seed it was drawn with, kept to say where it came from

    @property
    def n_inputs(self) -> int:
        return int(self.weights.shape[0])

    @property
    def units(self) -> int:
        return int(self.weights.shape[1])

    def __call__(self, inputs: Matrix) -> Matrix:
        """The features the neuron reads, each in [-1, 1]: shape (rows, units)."""
        with np.errstate(over="ignore", invalid="ignore"):
            out = inputs @ self.weights
        if not np.isfinite(out).all():  # raw rows near float max: see finite_sums
            out = finite_sums(inputs, self.weights, out)
        out += self.biases
        return np.tanh(out, out=out)

    @classmethod
    def draw(cls, n_inputs: int, units: int, seed: int) -> HiddenLayer:
        """Weights N(0, 1/n_inputs), biases N(0, 1), from the legacy RandomState(seed).

        On standardized inputs each unit's sum then has a variance of about 2: spread over
        tanh's bend rather than pinned at ±1 (docs/training.md has the measurements).
        """
        rng = np.random.RandomState(seed)
        weights = rng.standard_normal((n_inputs, units)) / np.sqrt(n_inputs)
        return cls(weights, rng.standard_normal(units), "tanh", seed)
