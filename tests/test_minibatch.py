"""Mini-batch training (big data): against a plain-Python loop, and what it promises."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.model import policy
from service.model.neuron import _REPORT_EVERY as REPORT_EVERY
from service.model.neuron import FULL_BATCH_ROWS, MINI_BATCH, classic_training_set, train
from service.schemas import RetrainRequest


def plain_minibatch(
    inputs: list[list[float]],
    targets: list[float],
    rate: float,
    batch: int,
    iterations: int,
    seed: int,
) -> list[float]:
    """The article's rule on batches, in plain Python: only the seeded draws come from numpy.

    Weights start as the legacy RandomState(seed) draws; each pass shuffles the rows with a
    second RandomState(seed), takes them a batch at a time (a short last batch is skipped)
    and steps on each batch's rows, summed in row order.
    """
    width = len(inputs[0])
    draws = np.random.RandomState(seed).random_sample((width, 1))[:, 0].tolist()
    weights = [2 * d - 1 for d in draws]
    shuffle = np.random.RandomState(seed)
    done = 0
    while done < iterations:
        order = shuffle.permutation(len(inputs)).tolist()
        for start in range(0, len(order) - batch + 1, batch):
            rows = sorted(order[start : start + batch])
            gradient = [0.0] * width
            for r in rows:
                z = max(
                    -500.0, min(500.0, sum(w * x for w, x in zip(weights, inputs[r], strict=True)))
                )
                out = 1 / (1 + math.exp(-z))
                delta = (targets[r] - out) * out * (1 - out)
                for j in range(width):
                    gradient[j] += inputs[r][j] * delta
            weights = [w + rate * g for w, g in zip(weights, gradient, strict=True)]
            done += 1
            if done == iterations:
                break
    return weights


def blobs(rows: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, rows)
    inputs = np.column_stack([rng.normal(size=(rows, 2)) + 1.5 * labels[:, None], np.ones(rows)])
    return inputs, labels.reshape(-1, 1).astype(float)


@pytest.mark.parametrize(("rows", "batch", "iterations"), [(40, 8, 23), (37, 5, 30), (12, 12, 5)])
def test_batches_follow_the_plain_python_loop(rows: int, batch: int, iterations: int) -> None:
    inputs, targets = blobs(rows)
    result = train(
        inputs, targets, iterations=iterations, learning_rate=0.3, seed=7, batch_size=batch
    )
    expected = plain_minibatch(inputs.tolist(), targets[:, 0].tolist(), 0.3, batch, iterations, 7)
    assert result.neuron.weights[:, 0] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert result.iterations == iterations


def test_a_batch_of_every_row_is_the_articles_loop_bit_for_bit() -> None:
    inputs, targets = classic_training_set()
    whole = train(inputs, targets, batch_size=4)
    article = train(inputs, targets)
    assert np.array_equal(whole.neuron.weights, article.neuron.weights)
    assert whole.neuron(np.array([[1.0, 0, 0]]))[0] == pytest.approx(0.99993704, abs=1e-6)


def test_progress_hears_rising_fractions_and_may_stop_the_run() -> None:
    inputs, targets = blobs(500)
    heard: list[float] = []
    train(inputs, targets, iterations=640, batch_size=50, progress=heard.append)
    assert heard == sorted(heard) and heard[-1] == 1.0 and len(heard) == 640 // REPORT_EVERY

    class Stop(Exception):
        pass

    def stop_at_half(fraction: float) -> None:
        if fraction >= 0.5:
            raise Stop

    with pytest.raises(Stop):
        train(inputs, targets, iterations=640, batch_size=50, progress=stop_at_half)


def test_tolerance_is_checked_after_each_pass() -> None:
    inputs, targets = blobs(400)
    result = train(
        inputs, targets, iterations=100_000, learning_rate=0.5, batch_size=40, tolerance=0.2
    )
    assert result.iterations % 10 == 0 and result.iterations < 100_000
    assert result.loss < 0.2


def test_big_data_gets_mini_batches_by_default_and_small_data_the_articles_rule() -> None:
    request = RetrainRequest()
    assert policy.batch_size(request, FULL_BATCH_ROWS) is None
    assert policy.batch_size(request, FULL_BATCH_ROWS + 1) == MINI_BATCH
    assert policy.batch_size(RetrainRequest(batch_size=64), 100) == 64


def test_mini_batches_learn_what_full_batches_learn() -> None:
    """Same data, same settings: held-out accuracy alike (rows past FULL_BATCH_ROWS)."""
    inputs, targets = blobs(FULL_BATCH_ROWS + 2_000, seed=5)
    test_inputs, test_targets = blobs(5_000, seed=6)
    request = RetrainRequest(intercept=True, validation_fraction=0)
    batched = policy.fit(inputs, targets, request, None)
    full = policy.fit(inputs, targets, request.model_copy(update={"batch_size": len(inputs)}), None)
    accuracy = [
        float(np.mean((c.neuron(test_inputs) >= 0.5) == (test_targets[:, 0] >= 0.5)))
        for c in (batched, full)
    ]
    assert accuracy[0] > 0.85 and abs(accuracy[0] - accuracy[1]) < 0.01, accuracy
