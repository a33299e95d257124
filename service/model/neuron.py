"""The math: one sigmoid neuron and the article's training loop. numpy only, no I/O."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

Matrix = NDArray[np.float64]

CLASSIC_INPUTS = ((0.0, 0.0, 1.0), (1.0, 1.0, 1.0), (1.0, 0.0, 1.0), (0.0, 1.0, 1.0))
CLASSIC_TARGETS = (0.0, 1.0, 1.0, 0.0)
DEFAULT_SEED = 1
DEFAULT_ITERATIONS = 10_000
DEFAULT_LEARNING_RATE = 1.0
_CHECK_CLOCK_EVERY = 256
# Past this many rows a step of the article's rule over every row costs more than it teaches:
# training takes mini-batches of MINI_BATCH rows instead (docs/training.md, bench/training.py).
FULL_BATCH_ROWS = 10_000
MINI_BATCH = 1_024
_REPORT_EVERY = 8  # steps between two calls of a progress callback (a job yields the CPU there)
# Up to this many rows the sigmoid runs per row in Python (the weighted sum stays numpy's, so
# the answer is bit for bit the same): numpy's clip, isfinite, exp and divide cost
# microseconds per call whatever the size. 1 row: 6.9 -> 2.6 us; about even at 12 rows,
# numpy ahead from 16 (timeit, A/B rounds).
_FEW_ROWS = 8
_Z_LIMIT = 500.0
_FLOAT_MAX = float(np.finfo(np.float64).max)


def sigmoid(z: Matrix) -> Matrix:
    """Logistic function. Clipping keeps exp() from overflowing; sigmoid(±500) is 1 or ~7e-218."""
    # In place in one buffer: the same operations in the same order, so the same bits, without
    # a temporary per step (10,000 rows: five 80 kB arrays through the cache become one).
    out = np.clip(z, -_Z_LIMIT, _Z_LIMIT)
    np.negative(out, out=out)
    np.exp(out, out=out)
    out += 1.0
    return np.divide(1.0, out, out=out)


def _sigmoid_one(z: float) -> float:
    """sigmoid() of one finite value, bit for bit: the same clip, numpy's exp, IEEE division."""
    return 1.0 / (1.0 + float(np.exp(-min(max(z, -_Z_LIMIT), _Z_LIMIT))))


class TrainingTimeout(Exception):
    """The run went past its wall-clock budget."""

    def __init__(self, iterations: int, budget: float) -> None:
        super().__init__(f"stopped after {iterations} iterations: budget of {budget:g} s spent")
        self.iterations = iterations
        self.budget = budget


@dataclass(frozen=True)
class Scaling:
    """Per-feature standardization fitted on training rows: (x - mean) / scale."""

    mean: Matrix  # shape (n,)
    scale: Matrix  # shape (n,), every value > 0

    @classmethod
    def fit(cls, inputs: Matrix) -> Scaling:
        """Mean and standard deviation of each column.

        A column that is constant in the training rows carries nothing to standardize: it is
        divided by its own magnitude instead (mean 0, scale |value|, or 1 for a zero column),
        so a column of ones keeps serving as the neuron's bias input and nothing divides by 0.
        Raises ValueError when a column's statistics overflow float64.
        """
        with np.errstate(over="ignore", invalid="ignore"):
            mean = inputs.mean(axis=0)
            std = inputs.std(axis=0)
        constant = (inputs == inputs[0]).all(axis=0)
        magnitude = np.abs(inputs[0])
        fallback = np.where(magnitude > 0, magnitude, 1.0)
        mean = np.where(constant, 0.0, mean)
        scale = np.where(constant | (std == 0), fallback, std)
        if not (np.isfinite(mean).all() and np.isfinite(scale).all()):
            raise ValueError("a feature's values are too large to standardize")
        return cls(mean, scale)

    def apply(self, inputs: Matrix) -> Matrix:
        """Scaled rows, always finite: a row far outside the training range (or a tiny scale)
        can overflow to ±inf, which is pinned at ±float max so the sum stays well defined."""
        with np.errstate(over="ignore"):
            scaled = inputs - self.mean
            np.divide(scaled, self.scale, out=scaled)  # in place: a million rows, one copy
        if not np.isfinite(scaled).all():
            np.clip(scaled, -_FLOAT_MAX, _FLOAT_MAX, out=scaled)
        return scaled


class Layer(Protocol):
    """What may stand between the (scaled) inputs and the neuron: hidden.HiddenLayer."""

    @property
    def n_inputs(self) -> int: ...
    def __call__(self, inputs: Matrix) -> Matrix: ...


@dataclass(frozen=True)
class Neuron:
    """[standardize ->] [hidden layer ->] weighted sum [+ bias] -> sigmoid.

    Call it with a (rows, n_inputs) matrix of raw rows. The article's neuron is the bare
    one: weights only, no bias, no scaling, no hidden layer.
    """

    weights: Matrix  # shape (features, 1): a weight per input, or per hidden unit
    scaling: Scaling | None = None  # applied to raw rows first, when the model was trained so
    bias: float | None = None  # the intercept; None: none (the article's neuron has none)
    hidden: Layer | None = None  # fixed, in front of the weights: only the weights were trained

    @property
    def n_inputs(self) -> int:
        if self.hidden is not None:
            return self.hidden.n_inputs
        return int(self.weights.shape[0])

    def __call__(self, inputs: Matrix) -> Matrix:
        """Probabilities of raw rows, shape (rows,)."""
        if self.scaling is not None:
            inputs = self.scaling.apply(inputs)
        if self.hidden is not None:
            inputs = self.hidden(inputs)
        z = inputs @ self.weights
        if self.bias is not None:
            z += self.bias
        if len(z) <= _FEW_ROWS:
            sums = z[:, 0].tolist()
            if all(map(math.isfinite, sums)):
                return np.array([_sigmoid_one(s) for s in sums], dtype=np.float64)
        if not np.isfinite(z).all():
            z = finite_sums(inputs, self.weights, inputs @ self.weights)
            if self.bias is not None:
                z += self.bias
        return sigmoid(z)[:, 0]

    @classmethod
    def random(cls, n_inputs: int, seed: int) -> Neuron:
        """Start in [-1, 1), drawn exactly as np.random.seed(seed); 2*np.random.random(...)-1."""
        rng = np.random.RandomState(seed)
        return cls(2 * rng.random_sample((n_inputs, 1)) - 1)


def finite_sums(inputs: Matrix, weights: Matrix, sums: Matrix) -> Matrix:
    """inputs @ weights (``sums``), again for rows whose sums overflowed (inf - inf is nan).

    Each factor is scaled into [-1, 1] first, so a sum is finite and keeps its sign; scaled
    back it is finite, or ±inf, which sigmoid's clipping (or tanh) turns into its limits.
    """
    bad = ~np.isfinite(sums).all(axis=1)
    rows = inputs[bad]
    row_scale = np.abs(rows).max(axis=1, keepdims=True)
    row_scale[row_scale == 0] = 1.0
    weight_scale = np.abs(weights).max() or 1.0
    with np.errstate(over="ignore"):
        rescued = ((rows / row_scale) @ (weights / weight_scale)) * row_scale * weight_scale
    sums = sums.copy()
    sums[bad] = rescued
    return sums


@dataclass(frozen=True)
class TrainingResult:
    neuron: Neuron
    initial_loss: float
    loss: float
    iterations: int
    saturated: bool
    learning_rate: float

    @property
    def improved(self) -> bool:
        return self.loss < self.initial_loss

    @property
    def converged(self) -> bool:
        """Worth promoting: the loss went down and the outputs are not stuck at 0/1."""
        return self.improved and not self.saturated


def mse(outputs: Matrix, targets: Matrix) -> float:
    return float(np.mean((targets - outputs) ** 2))


def step(
    weights: Matrix,
    inputs: Matrix,
    targets: Matrix,
    learning_rate: float,
    l2: float = 0.0,
    penalized: Matrix | None = None,
) -> Matrix:
    """One update of the article: w + lr * X.T @ (error * sigmoid'(out)); returns new weights.

    With ``l2`` the weights ``penalized`` marks with 1 (not the bias) are then divided by
    1 + lr * l2: the implicit (proximal) step of the penalty l2/2 |w|^2. Its fixed points are
    those of plain gradient descent on 1/2 sum((t - out)^2) + l2/2 |w|^2, but unlike the
    explicit step (w - lr * l2 * w) it cannot diverge however large lr * l2 is.
    """
    outputs = sigmoid(inputs @ weights)
    moved = weights + learning_rate * (inputs.T @ ((targets - outputs) * outputs * (1 - outputs)))
    if not l2:
        return moved
    shrink = 1.0 + learning_rate * l2 * (1.0 if penalized is None else penalized)
    return moved / shrink


def is_saturated(outputs: Matrix, targets: Matrix) -> bool:
    """Outputs pinned at 0/1 while still wrong: the gradient has vanished, training is stuck."""
    pinned = outputs * (1 - outputs) < 1e-6
    return bool(np.mean(pinned) >= 0.9 and mse(outputs, targets) >= 0.1)


Progress = Callable[[float], None]  # told the fraction of a run done; may raise to stop it


def train(
    inputs: Matrix,
    targets: Matrix,
    *,
    iterations: int = DEFAULT_ITERATIONS,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    seed: int = DEFAULT_SEED,
    tolerance: float | None = None,
    budget_seconds: float | None = None,
    standardize: bool = False,
    intercept: bool = False,
    l2: float = 0.0,
    hidden: Layer | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> TrainingResult:
    """Train a fresh neuron on (rows, n) inputs and (rows, 1) targets, as the article does.

    ``standardize`` fits a Scaling on the rows, trains on the scaled rows and keeps the
    scaling in the neuron, which then takes raw rows. ``hidden`` (fixed) turns the scaled
    rows into the features the neuron is trained on. ``intercept`` adds a bias: a weight on
    a constant input of 1, drawn after the others. ``l2`` penalizes the weights, not the bias.
    ``batch_size`` below the row count makes each iteration one step on that many rows,
    drawn without replacement (a seeded shuffle per pass). Stops early when the mean squared
    error falls below ``tolerance`` (checked after each pass over the rows when mini-batched);
    raises TrainingTimeout when ``budget_seconds`` are spent. ``progress`` hears the fraction
    of the iterations done. The defaults are the article's.
    """
    scaling = Scaling.fit(inputs) if standardize else None
    features = _Features(scaling, hidden, intercept)
    weights = Neuron.random(features.width(inputs.shape[1]), seed).weights.copy()
    penalized = np.ones_like(weights)
    if intercept:
        penalized[-1] = 0.0
    rule = _Rule(learning_rate, l2, penalized)
    run = _Run(iterations, tolerance, budget_seconds, progress)
    if batch_size is None or batch_size >= len(inputs):
        weights, outputs, initial = _full_batch(features(inputs), targets, weights, rule, run)
    else:
        weights, outputs, initial = _mini_batches(
            features, inputs, targets, weights, rule, batch_size, seed, run
        )
    bias = float(weights[-1, 0]) if intercept else None
    return TrainingResult(
        neuron=Neuron(weights[:-1] if intercept else weights, scaling, bias, hidden),
        initial_loss=initial,
        loss=mse(outputs, targets),
        iterations=run.done,
        saturated=is_saturated(outputs, targets),
        learning_rate=learning_rate,
    )


@dataclass(frozen=True)
class _Features:
    """Raw rows -> what the weights multiply: scaled, through the hidden layer, with a 1."""

    scaling: Scaling | None
    hidden: Layer | None
    intercept: bool

    def width(self, n_inputs: int) -> int:
        hidden = n_inputs if self.hidden is None else self.hidden(np.zeros((1, n_inputs))).shape[1]
        return hidden + self.intercept

    def __call__(self, inputs: Matrix) -> Matrix:
        if self.scaling is not None:
            inputs = self.scaling.apply(inputs)
        if self.hidden is not None:
            inputs = self.hidden(inputs)
        if self.intercept:
            inputs = np.hstack([inputs, np.ones((len(inputs), 1))])
        return inputs


class _Run:
    """Counts iterations; tells progress, watches the clock and the tolerance."""

    def __init__(
        self,
        iterations: int,
        tolerance: float | None,
        budget: float | None,
        progress: Progress | None,
    ) -> None:
        self.iterations, self.tolerance, self.budget, self.progress = (
            iterations,
            tolerance,
            budget,
            progress,
        )
        self.deadline = None if budget is None else time.monotonic() + budget
        self.done = 0

    def advance(self) -> None:
        self.done += 1
        clock = self.deadline is not None and self.done % _CHECK_CLOCK_EVERY == 0
        if clock and time.monotonic() > (self.deadline or 0.0):
            raise TrainingTimeout(self.done, self.budget or 0.0)
        if self.progress is not None and self.done % _REPORT_EVERY == 0:
            self.progress(self.done / self.iterations)

    def tolerated(self, outputs: Matrix, targets: Matrix) -> bool:
        return self.tolerance is not None and mse(outputs, targets) < self.tolerance


@dataclass(frozen=True)
class _Rule:
    """The article's update with its learning rate and penalty (see step())."""

    learning_rate: float
    l2: float
    penalized: Matrix

    def __call__(self, weights: Matrix, inputs: Matrix, targets: Matrix) -> Matrix:
        return step(weights, inputs, targets, self.learning_rate, self.l2, self.penalized)


def _full_batch(
    inputs: Matrix, targets: Matrix, weights: Matrix, rule: _Rule, run: _Run
) -> tuple[Matrix, Matrix, float]:
    """The article's loop: every row in every step. (weights, outputs, initial loss)"""
    initial_loss = mse(sigmoid(inputs @ weights), targets)
    while run.done < run.iterations:
        weights = rule(weights, inputs, targets)
        if run.tolerance is not None and run.tolerated(sigmoid(inputs @ weights), targets):
            run.done += 1
            break
        run.advance()
    return weights, sigmoid(inputs @ weights)[:, 0:1], initial_loss


def _mini_batches(
    features: _Features,
    inputs: Matrix,
    targets: Matrix,
    weights: Matrix,
    rule: _Rule,
    batch_size: int,
    seed: int,
    run: _Run,
) -> tuple[Matrix, Matrix, float]:
    """One step per batch of rows; features are made a batch at a time, never for every row."""
    rng = np.random.RandomState(seed)
    initial_loss = mse(_outputs(features, inputs, weights), targets)
    while run.done < run.iterations:
        order = rng.permutation(len(inputs))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            rows = np.sort(order[start : start + batch_size])  # sorted: a gather in memory order
            weights = rule(weights, features(inputs[rows]), targets[rows])
            run.advance()
            if run.done >= run.iterations:
                break
        else:
            if run.tolerated(_outputs(features, inputs, weights), targets):
                break
    return weights, _outputs(features, inputs, weights), initial_loss


def _outputs(features: _Features, inputs: Matrix, weights: Matrix) -> Matrix:
    """sigmoid(features @ weights) for every row, MINI_BATCH * 64 rows at a time."""
    chunk = MINI_BATCH * 64
    return np.concatenate(
        [sigmoid(features(inputs[i : i + chunk]) @ weights) for i in range(0, len(inputs), chunk)]
        or [np.empty((0, 1))]
    )


def classic_training_set() -> tuple[Matrix, Matrix]:
    """The article's four rows: the output follows the first input."""
    return np.array(CLASSIC_INPUTS), np.array(CLASSIC_TARGETS).reshape(-1, 1)
