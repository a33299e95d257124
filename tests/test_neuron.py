"""The neuron against the article's published figure and an independent implementation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from service.model import neuron as neuron_module
from service.model.neuron import (
    Neuron,
    Scaling,
    TrainingTimeout,
    classic_training_set,
    mse,
    sigmoid,
    step,
    train,
)

PUBLISHED = 0.99993704  # the article's prediction for [1, 0, 0] after 10,000 iterations
WEIGHTS = [9.6730, -0.2078, -4.6296]


def article_reference(iterations: int = 10_000) -> np.ndarray:
    """The article's loop, written independently: global legacy RNG, plain formulas."""
    state = np.random.get_state()
    try:
        np.random.seed(1)
        weights = 2 * np.random.random((3, 1)) - 1
    finally:
        np.random.set_state(state)
    inputs = np.array([[0, 0, 1], [1, 1, 1], [1, 0, 1], [0, 1, 1]], dtype=float)
    targets = np.array([[0, 1, 1, 0]], dtype=float).T
    for _ in range(iterations):
        output = 1 / (1 + np.exp(-(inputs @ weights)))
        weights += inputs.T @ ((targets - output) * output * (1 - output))
    return weights


def test_defaults_reproduce_the_published_prediction() -> None:
    result = train(*classic_training_set())
    prediction = result.neuron(np.array([[1.0, 0.0, 0.0]]))
    assert prediction.shape == (1,)
    assert prediction[0] == pytest.approx(PUBLISHED, abs=1e-6)
    assert result.neuron.weights[:, 0] == pytest.approx(WEIGHTS, abs=1e-4)
    assert result.iterations == 10_000


def test_training_matches_the_independent_reference() -> None:
    reference = article_reference()
    ours = train(*classic_training_set()).neuron.weights
    assert np.allclose(ours, reference, rtol=0, atol=1e-9)


def test_random_start_is_the_legacy_draw_without_touching_global_state() -> None:
    before = np.random.get_state()[1].copy()
    drawn = Neuron.random(3, seed=1).weights
    assert np.array_equal(np.random.get_state()[1], before)
    np.random.seed(1)
    assert np.array_equal(drawn, 2 * np.random.random((3, 1)) - 1)
    assert ((drawn >= -1) & (drawn < 1)).all()


def test_same_seed_and_data_give_bit_identical_weights() -> None:
    first = train(*classic_training_set(), iterations=500, seed=7).neuron.weights
    second = train(*classic_training_set(), iterations=500, seed=7).neuron.weights
    other = train(*classic_training_set(), iterations=500, seed=8).neuron.weights
    assert first.tobytes() == second.tobytes()
    assert first.tobytes() != other.tobytes()


def test_update_step_follows_the_numerical_gradient_of_half_the_squared_error() -> None:
    rng = np.random.default_rng(3)
    inputs = rng.normal(size=(6, 4))
    targets = rng.uniform(size=(6, 1))
    weights = rng.normal(size=(4, 1))

    def loss(w: np.ndarray) -> float:
        return 0.5 * float(np.sum((targets - sigmoid(inputs @ w)) ** 2))

    eps = 1e-6
    numeric = np.zeros_like(weights)
    for i in range(len(weights)):
        bump = np.zeros_like(weights)
        bump[i] = eps
        numeric[i] = (loss(weights + bump) - loss(weights - bump)) / (2 * eps)
    update = step(weights, inputs, targets, learning_rate=1.0) - weights
    assert np.allclose(update, -numeric, rtol=1e-6, atol=1e-9)


def test_the_number_of_inputs_follows_the_training_data() -> None:
    rng = np.random.default_rng(0)
    inputs = rng.uniform(size=(20, 5))
    targets = (inputs[:, :1] > 0.5).astype(float)
    result = train(inputs, targets, iterations=50)
    assert result.neuron.n_inputs == 5
    assert result.neuron(inputs).shape == (20,)


def _iris() -> tuple[np.ndarray, np.ndarray]:
    from pathlib import Path

    data = np.loadtxt(
        Path(__file__).parent / "data" / "iris_setosa_versicolor.csv", delimiter=",", skiprows=1
    )
    return data[:, :4], data[:, 4:]


def test_a_rate_that_suits_four_rows_saturates_on_iris() -> None:
    result = train(*_iris(), learning_rate=1.0)
    assert result.saturated
    assert not result.converged
    assert result.loss == pytest.approx(0.5, abs=1e-3)


def test_a_smaller_rate_separates_iris() -> None:
    inputs, targets = _iris()
    result = train(inputs, targets, learning_rate=0.01)
    assert result.converged
    assert np.array_equal(result.neuron(inputs) > 0.5, targets[:, 0] > 0.5)


def test_early_stop_below_tolerance() -> None:
    result = train(*classic_training_set(), tolerance=0.01)
    assert result.iterations < 10_000
    assert result.loss < 0.01
    assert (
        mse(result.neuron(classic_training_set()[0]).reshape(-1, 1), classic_training_set()[1])
        < 0.01
    )


def test_wall_clock_budget_stops_a_long_run() -> None:
    inputs = np.random.default_rng(1).uniform(size=(2000, 50))
    targets = (inputs[:, :1] > 0.5).astype(float)
    with pytest.raises(TrainingTimeout) as caught:
        train(inputs, targets, iterations=10**9, budget_seconds=0.05)
    assert 0 < caught.value.iterations < 10**9


def test_sigmoid_is_exact_enough_and_quiet_at_the_extremes() -> None:
    z = np.array([[-1000.0], [-30.0], [0.0], [30.0], [1000.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = sigmoid(z)
    assert out[2, 0] == 0.5
    assert out[1, 0] == pytest.approx(np.exp(-30) / (1 + np.exp(-30)), rel=1e-12)
    assert out[0, 0] >= 0 and out[4, 0] == 1.0


# -- standardization ------------------------------------------------------------------------


def test_scaling_is_the_columns_mean_and_population_std() -> None:
    rows = np.array([[1.0, 100.0, 5.0, 0.0], [3.0, 300.0, 5.0, 0.0], [8.0, 2000.0, 5.0, 0.0]])
    scaling = Scaling.fit(rows)
    # by hand for column 0: mean 4, deviations -3 -1 4, variance 26/3
    assert scaling.mean[:2] == pytest.approx([4.0, 800.0])
    assert scaling.scale[0] == pytest.approx(np.sqrt(26 / 3))
    assert scaling.scale[1] == pytest.approx(np.std([100.0, 300.0, 2000.0]))
    # constant columns: never divided by zero; a column of fives becomes a column of ones
    assert scaling.mean[2:].tolist() == [0.0, 0.0]
    assert scaling.scale[2:].tolist() == [5.0, 1.0]
    scaled = scaling.apply(rows)
    assert np.isfinite(scaled).all()
    assert scaled[:, :2].mean(axis=0) == pytest.approx([0.0, 0.0], abs=1e-12)
    assert scaled[:, :2].std(axis=0) == pytest.approx([1.0, 1.0])
    assert scaled[:, 2].tolist() == [1.0, 1.0, 1.0]


def test_scaling_of_tiny_values_whose_variance_underflows_stays_finite() -> None:
    rows = np.array([[1e-200], [2e-200], [3e-200]])
    assert np.isfinite(Scaling.fit(rows).apply(rows)).all()


def test_scaling_refuses_columns_whose_statistics_overflow() -> None:
    with pytest.raises(ValueError, match="too large"):
        Scaling.fit(np.array([[1e308], [1.7e308], [1.7e308]]))  # their sum is inf


def test_standardized_training_takes_raw_rows_and_equals_training_on_scaled_rows() -> None:
    rng = np.random.default_rng(3)
    raw = rng.normal([5000.0, 0.002], [1000.0, 0.001], size=(60, 2))
    targets = (raw[:, :1] > 5000.0).astype(float)
    ours = train(raw, targets, iterations=500, learning_rate=0.1, standardize=True)
    scaled = (raw - raw.mean(axis=0)) / raw.std(axis=0)
    reference = train(scaled, targets, iterations=500, learning_rate=0.1)
    assert ours.neuron.scaling is not None
    assert np.allclose(ours.neuron.weights, reference.neuron.weights, rtol=0, atol=1e-12)
    assert np.allclose(ours.neuron(raw), reference.neuron(scaled), rtol=0, atol=1e-12)
    assert ours.loss == pytest.approx(reference.loss)


def test_default_training_has_no_scaling() -> None:
    assert train(*classic_training_set()).neuron.scaling is None


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(
    hnp.arrays(np.float64, st.tuples(st.integers(2, 6), st.integers(1, 3)), elements=finite),
    hnp.arrays(np.float64, (4, 3), elements=finite),
    hnp.arrays(np.float64, (3, 1), elements=st.floats(-1e6, 1e6)),
)
@settings(max_examples=300, deadline=None, database=None)
def test_a_standardized_neuron_answers_a_probability_for_any_finite_row(
    training: np.ndarray, rows: np.ndarray, weights: np.ndarray
) -> None:
    try:
        scaling = Scaling.fit(training)
    except ValueError:
        return  # refused up front: the column's statistics overflow
    width = training.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        probabilities = Neuron(weights[:width], scaling)(rows[:, :width])
    assert np.isfinite(scaling.apply(rows[:, :width])).all()
    assert ((probabilities >= 0) & (probabilities <= 1)).all()


def test_rows_far_outside_a_tiny_training_range_still_get_probabilities() -> None:
    result = train(
        np.array([[1e-300], [2e-300], [3e-300], [4e-300]]),
        np.array([[0.0], [0.0], [1.0], [1.0]]),
        standardize=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the weighted sum overflows, rescued
        answer = result.neuron(np.array([[1e10], [-1e10], [1e308]]))
    assert answer.tolist() == pytest.approx([1.0, 0.0, 1.0])


def _numpy_path(neuron: Neuron, rows: np.ndarray) -> np.ndarray:
    """The same rows through the whole-matrix numpy sigmoid (the per-row path switched off).

    Not the rows inside a bigger batch: BLAS may sum one row's products in another order
    (dot vs gemv), so a row alone and the same row in a batch can differ in the last bit.
    """
    few = neuron_module._FEW_ROWS
    neuron_module._FEW_ROWS = 0
    try:
        return neuron(rows)
    finally:
        neuron_module._FEW_ROWS = few


@pytest.mark.parametrize("width", [1, 2, 3, 7])
def test_a_few_rows_get_bit_for_bit_the_numpy_answer(width: int) -> None:
    """Rows 1..8 take the per-row sigmoid; sums past ±500 (clipped) included."""
    rng = np.random.default_rng(width)
    for _ in range(300):
        scale = rng.choice([0.1, 1.0, 10.0, 300.0])
        weights = rng.normal(size=(width, 1)) * scale
        rows = rng.normal(size=(int(rng.integers(1, 9)), width)) * rng.choice([1.0, 10.0, 100.0])
        neuron = Neuron(weights)
        got = neuron(rows)
        assert got.dtype == np.float64 and got.shape == (len(rows),)
        assert np.array_equal(got, _numpy_path(neuron, rows))
        # and the formula written independently, numpy on the whole matrix
        assert np.array_equal(got, 1.0 / (1.0 + np.exp(-np.clip(rows @ weights, -500, 500)))[:, 0])


def test_a_few_standardized_rows_get_bit_for_bit_the_numpy_answer() -> None:
    rng = np.random.default_rng(7)
    neuron = train(rng.normal(size=(20, 3)) * 50, (rng.random((20, 1)) > 0.5) * 1.0,
                   iterations=50, standardize=True).neuron  # fmt: skip
    rows = rng.normal(size=(5, 3)) * 80
    assert np.array_equal(neuron(rows), _numpy_path(neuron, rows))


def test_the_classic_row_alone_is_the_classic_figure() -> None:
    neuron = train(*classic_training_set()).neuron
    alone = neuron(np.array([[1.0, 0.0, 0.0]]))
    assert alone.tolist() == _numpy_path(neuron, np.array([[1.0, 0.0, 0.0]])).tolist()
    assert alone[0] == pytest.approx(PUBLISHED, abs=1e-8)


def test_a_few_rows_whose_sum_overflows_are_rescued_as_by_numpy() -> None:
    neuron = Neuron(np.array([[1e300], [1e300]]))
    rows = np.array([[1e300, -1e300], [1e10, 1e10], [1.0, -1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the weighted sum overflows, rescued
        got = neuron(rows)
        want = _numpy_path(neuron, rows)
    assert np.array_equal(got, want)
    assert np.isfinite(got).all()
