"""The retrain policy on its own: no Flask, no store, options from a plain dataclass."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pytest

from service.errors import TrainingRejected, ValidationFailed
from service.model import policy
from service.model.neuron import Neuron, classic_training_set, train


@dataclass(frozen=True)
class Hidden:
    units: int
    seed: int | None = None


@dataclass(frozen=True)
class Options:
    """The article's settings and no refit (RetrainRequest's defaults differ: see the API)."""

    iterations: int = 10_000
    learning_rate: float | None = 1.0
    seed: int = 1
    tolerance: float | None = None
    standardize: bool = False
    validation_fraction: float | None = None
    promote: Literal["always", "if_better"] = "always"
    intercept: bool = False
    l2: float = 0.0
    hidden: Hidden | None = None
    refit: bool = False
    batch_size: int | None = None


def _blobs(rows: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two separable classes of two features, plus the article's column of ones."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, rows)
    features = rng.normal(0, 1, (rows, 2)) + 3 * labels[:, None]
    inputs = np.column_stack([features, np.ones(rows)])
    return inputs, labels.reshape(-1, 1).astype(float)


def _refuse_to_be_asked() -> tuple[int, Neuron]:
    raise AssertionError("the serving model was looked at without promote=if_better")


def test_the_classic_set_with_the_defaults_is_the_articles_neuron() -> None:
    inputs, targets = classic_training_set()
    candidate = policy.fit(inputs, targets, Options(), budget_seconds=None)
    article = train(inputs, targets).neuron
    assert np.array_equal(candidate.neuron.weights, article.weights)
    assert candidate.neuron(np.array([[1.0, 0.0, 0.0]]))[0] == pytest.approx(0.99993704, abs=1e-6)
    assert (candidate.fraction, candidate.held_out, candidate.warnings) == (0.0, None, [])
    assert candidate.scores.rows == 4 and candidate.scores.accuracy == 1.0


def test_enough_rows_are_split_and_judged_on_the_held_out_ones() -> None:
    inputs, targets = _blobs()
    candidate = policy.fit(inputs, targets, Options(learning_rate=0.1), budget_seconds=None)
    assert candidate.fraction == 0.25 and candidate.held_out is not None
    assert candidate.scores.rows + candidate.held_out.rows == len(targets)
    assert len(candidate.judged_on[0]) == candidate.held_out.rows
    verdict = candidate.verdict(Options(), _refuse_to_be_asked)
    assert verdict.promoted and "held-out rows" in verdict.reason and verdict.champion is None


def test_if_better_keeps_an_equal_champion_and_gives_its_scores() -> None:
    inputs, targets = _blobs()
    options = Options(learning_rate=0.1, promote="if_better")
    candidate = policy.fit(inputs, targets, options, budget_seconds=None)
    verdict = candidate.verdict(options, lambda: (7, candidate.neuron))
    assert not verdict.promoted
    assert verdict.reason.startswith("not promoted:") and "serving version 7" in verdict.reason
    assert verdict.champion is not None and candidate.held_out is not None
    version, theirs = verdict.champion
    ours = candidate.held_out
    assert (version, theirs.rows, theirs.loss, theirs.accuracy) == (
        7,
        ours.rows,
        ours.loss,
        ours.accuracy,
    )


def test_if_better_promotes_over_a_worse_champion_or_one_of_other_features() -> None:
    inputs, targets = _blobs()
    options = Options(learning_rate=0.1, promote="if_better")
    candidate = policy.fit(inputs, targets, options, budget_seconds=None)
    backwards = Neuron(-candidate.neuron.weights)
    beaten = candidate.verdict(options, lambda: (2, backwards))
    assert beaten.promoted and beaten.champion is not None and beaten.champion[0] == 2
    assert beaten.champion[1].accuracy < candidate.held_out.accuracy  # type: ignore[union-attr]
    wider = candidate.verdict(options, lambda: (3, Neuron(np.zeros((4, 1)))))
    assert wider.promoted and wider.champion is None
    assert "not compared with serving version 3, which takes 4 features, not 3" in wider.reason


def test_a_model_no_better_than_the_majority_class_carries_the_gates_warning() -> None:
    inputs, targets = _blobs()
    noise = np.random.default_rng(1).normal(size=inputs.shape)  # features that say nothing
    candidate = policy.fit(noise, targets, Options(learning_rate=0.1), budget_seconds=None)
    assert any("majority-class baseline" in warning for warning in candidate.warnings)
    assert candidate.refusal().endswith("send force=true to promote it.")


def test_a_spent_budget_and_an_impossible_split_are_refused_as_errors() -> None:
    inputs, targets = _blobs(rows=2_000)
    with pytest.raises(TrainingRejected, match="ask for fewer iterations"):
        policy.fit(inputs, targets, replace(Options(), iterations=10**9), budget_seconds=0.0)
    few, few_targets = classic_training_set()
    with pytest.raises(ValidationFailed, match="too few rows to hold out"):
        policy.fit(few, few_targets, Options(validation_fraction=0.1), budget_seconds=None)


def test_refit_serves_a_model_of_every_row_judged_by_its_validated_run() -> None:
    inputs, targets = _blobs()
    options = Options(learning_rate=None, intercept=True, l2=0.3, refit=True)
    refitted = policy.fit(inputs, targets, options, budget_seconds=None)
    validated = policy.fit(inputs, targets, replace(options, refit=False), budget_seconds=None)
    assert refitted.refit and not validated.refit
    assert refitted.held_out == validated.held_out  # the validated run's scores, both times
    assert refitted.scores.rows == len(targets) == validated.scores.rows + validated.held_out.rows  # type: ignore[union-attr]
    assert refitted.learning_rate == 4 / len(targets)
    assert validated.learning_rate == 4 / validated.scores.rows
    assert not np.array_equal(refitted.neuron.weights, validated.neuron.weights)
    # no split, nothing to refit: the classic set
    classic = policy.fit(*classic_training_set(), options, budget_seconds=None)
    assert not classic.refit and classic.learning_rate == 1.0


def test_the_refit_shares_the_validated_runs_hidden_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    layers = []
    real_train = policy.train

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        layers.append(kwargs["hidden"])
        return real_train(*args, **kwargs)

    monkeypatch.setattr(policy, "train", spy)
    options = Options(learning_rate=None, intercept=True, hidden=Hidden(8, seed=3), refit=True)
    candidate = policy.fit(*_blobs(), options, budget_seconds=None)
    assert len(layers) == 2 and layers[0] is layers[1] is candidate.neuron.hidden
    assert layers[0].seed == 3 and layers[0].units == 8


def test_a_refit_past_the_budget_says_it_was_the_refit(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.model.neuron import TrainingTimeout

    real_train, calls = policy.train, []

    def second_times_out(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs["budget_seconds"])
        if len(calls) == 2:
            raise TrainingTimeout(256, kwargs["budget_seconds"])
        return real_train(*args, **kwargs)

    monkeypatch.setattr(policy, "train", second_times_out)
    with pytest.raises(TrainingRejected, match="the refit on every row stopped after 256") as err:
        policy.fit(*_blobs(), Options(learning_rate=0.1, refit=True), budget_seconds=30.0)
    assert "refit=false" in str(err.value)
    assert calls[0] == 30.0 and 0 < calls[1] < 30.0  # the refit gets what is left
