"""The bias, the L2 penalty and the fixed hidden layer, checked against finite differences.

The objective is written out here from its definition, not taken from the service:
J(w) = 1/2 sum((t - sigmoid(F @ w))^2) + l2/2 |w without the bias|^2, with F the features the
neuron reads (the hidden layer's, then a column of ones for the bias).
"""

from __future__ import annotations

import numpy as np
import pytest

from service.model.hidden import HiddenLayer
from service.model.neuron import Neuron, classic_training_set, step, train


def logistic(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def objective(w: np.ndarray, features: np.ndarray, t: np.ndarray, l2: float) -> float:
    error = t - logistic(features @ w)
    return float(0.5 * np.sum(error**2) + 0.5 * l2 * np.sum(w[:-1] ** 2))


def numeric_gradient(w: np.ndarray, features: np.ndarray, t: np.ndarray, l2: float) -> np.ndarray:
    """Central differences, one weight at a time."""
    gradient = np.zeros_like(w)
    for i in range(len(w)):
        h = 1e-6 * max(1.0, abs(float(w[i, 0])))
        up, down = w.copy(), w.copy()
        up[i] += h
        down[i] -= h
        gradient[i] = (objective(up, features, t, l2) - objective(down, features, t, l2)) / (2 * h)
    return gradient


def data(rows: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    inputs = rng.normal(0, 1, (rows, 3))
    targets = ((inputs[:, 0] * inputs[:, 1] > 0).astype(float)).reshape(-1, 1)
    return inputs, targets


def features_of(layer: HiddenLayer, inputs: np.ndarray) -> np.ndarray:
    """What the neuron reads: tanh(x @ W + b) by hand, then the bias's column of ones."""
    hidden = np.tanh(inputs @ layer.weights + layer.biases)
    return np.hstack([hidden, np.ones((len(inputs), 1))])


@pytest.mark.parametrize("l2", [0.0, 0.3, 5.0])
def test_a_small_step_goes_down_the_gradient_of_the_penalized_objective(l2: float) -> None:
    inputs, targets = data()
    layer = HiddenLayer.draw(3, 8, seed=4)
    features = features_of(layer, inputs)
    w = np.random.default_rng(1).normal(0, 1, (9, 1))
    penalized = np.ones_like(w)
    penalized[-1] = 0.0  # the bias
    rate = 1e-7
    moved = (step(w, features, targets, rate, l2, penalized) - w) / rate
    assert np.allclose(moved, -numeric_gradient(w, features, targets, l2), rtol=1e-5, atol=1e-7)


def test_training_ends_where_the_penalized_gradient_vanishes() -> None:
    """The implicit penalty step has the fixed points of gradient descent on J: bias free."""
    inputs, targets = data()
    layer = HiddenLayer.draw(3, 8, seed=4)
    result = train(
        inputs, targets, iterations=20_000, learning_rate=0.1, intercept=True, l2=1.0, hidden=layer
    )
    neuron = result.neuron
    assert neuron.bias is not None and neuron.hidden is layer
    w = np.vstack([neuron.weights, [[neuron.bias]]])
    features = features_of(layer, inputs)
    start = numeric_gradient(np.zeros_like(w), features, targets, 1.0)
    assert np.abs(numeric_gradient(w, features, targets, 1.0)).max() < 1e-6 * np.abs(start).max()
    # and the bias is not pulled towards 0: the data alone sets it
    assert numeric_gradient(w, features, targets, 0.0)[-1, 0] == pytest.approx(0.0, abs=1e-6)


def test_the_served_neuron_computes_what_its_parts_say() -> None:
    inputs, targets = data()
    result = train(inputs * 50 + 7, targets, standardize=True, intercept=True, l2=0.3,
                   hidden=HiddenLayer.draw(3, 16, seed=2), iterations=500, learning_rate=0.1)  # fmt: skip
    neuron = result.neuron
    assert neuron.scaling is not None and neuron.hidden is not None and neuron.bias is not None
    raw = inputs * 50 + 7
    scaled = (raw - neuron.scaling.mean) / neuron.scaling.scale
    by_hand = logistic(
        features_of(neuron.hidden, scaled) @ np.vstack([neuron.weights, [[neuron.bias]]])
    )  # type: ignore[arg-type]
    assert np.allclose(neuron(raw), by_hand[:, 0], rtol=1e-12)
    assert neuron.n_inputs == 3 and neuron.weights.shape == (16, 1)
    for few in range(1, 9):  # the few-rows path (row by row in Python) agrees; BLAS may
        # sum a block of 1..8 rows in another order than 40, hence not to the bit
        assert np.allclose(neuron(raw[:few]), neuron(raw)[:few], rtol=1e-14, atol=0)


def test_the_bias_is_drawn_after_the_weights_and_the_articles_run_is_untouched() -> None:
    inputs, targets = classic_training_set()
    article = train(inputs, targets).neuron
    assert article.bias is None and article.hidden is None
    assert article(np.array([[1.0, 0.0, 0.0]]))[0] == pytest.approx(0.99993704, abs=1e-6)
    np.random.seed(1)  # the article's own draw, four values now: three weights, then the bias
    drawn = 2 * np.random.random((4, 1)) - 1
    zero = train(inputs, targets, iterations=0, intercept=True).neuron
    assert np.array_equal(zero.weights, drawn[:3]) and zero.bias == drawn[3, 0]


def test_a_huge_learning_rate_with_a_penalty_cannot_overflow() -> None:
    """The explicit step w - lr * l2 * w would multiply w by -299 per iteration here."""
    inputs, targets = data()
    result = train(inputs, targets, iterations=2_000, learning_rate=1_000, l2=0.3, intercept=True)
    assert np.isfinite(result.neuron.weights).all() and np.isfinite(result.loss)


def test_the_layer_comes_from_its_seed_alone() -> None:
    one, same, other = (HiddenLayer.draw(5, 32, s) for s in (7, 7, 8))
    assert np.array_equal(one.weights, same.weights) and np.array_equal(one.biases, same.biases)
    assert not np.array_equal(one.weights, other.weights)
    rng = np.random.RandomState(7)  # N(0, 1/n) weights, then N(0, 1) biases
    assert np.array_equal(one.weights, rng.standard_normal((5, 32)) / np.sqrt(5))
    assert np.array_equal(one.biases, rng.standard_normal(32))
    assert (one.n_inputs, one.units, one.seed) == (5, 32, 7)


def test_rows_near_float_max_give_probabilities_through_a_hidden_layer() -> None:
    layer = HiddenLayer.draw(3, 4, seed=1)
    neuron = Neuron(np.ones((4, 1)), None, 0.5, layer)
    rows = np.array([[1e308, -1e308, 1e308]] * 10 + [[0.0, 0.0, 0.0]])
    out = neuron(rows)
    assert np.isfinite(out).all() and ((out >= 0) & (out <= 1)).all()
    assert out[-1] == pytest.approx(logistic(np.tanh(layer.biases).sum() + 0.5))
