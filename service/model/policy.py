"""The retrain policy: split, train, score, warnings and the gate, then the champion verdict.

What the service decides about a retrain, without I/O: rows and options in, a Candidate out
(the trained neuron, its scores and any reasons not to serve it), then the Candidate's Verdict
against the serving model. The verdict is a second step because it must be taken under the
store's writers' lock, which training must not hold. Limits, the lock, saving, the swap and
metrics are ModelServer's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from ..errors import TrainingRejected, validation_error
from .hidden import HiddenLayer
from .neuron import (
    FULL_BATCH_ROWS,
    MINI_BATCH,
    Matrix,
    Neuron,
    Progress,
    TrainingResult,
    TrainingTimeout,
    train,
)
from .validation import Index, Scores, default_fraction, majority_class, score, stratified_split

STEP_PER_ROW = 4.0  # the default learning rate over the rows: the article's 1.0 on its 4 rows


class HiddenOptions(Protocol):
    """The hidden layer a retrain asks for (a HiddenRequest)."""

    @property
    def units(self) -> int: ...
    @property
    def seed(self) -> int | None: ...


class Options(Protocol):
    """The settings of one retrain (a RetrainRequest carries them)."""

    @property
    def iterations(self) -> int: ...
    @property
    def learning_rate(self) -> float | None: ...
    @property
    def intercept(self) -> bool: ...
    @property
    def l2(self) -> float: ...
    @property
    def hidden(self) -> HiddenOptions | None: ...
    @property
    def refit(self) -> bool: ...
    @property
    def seed(self) -> int: ...
    @property
    def tolerance(self) -> float | None: ...
    @property
    def batch_size(self) -> int | None: ...
    @property
    def standardize(self) -> bool: ...
    @property
    def validation_fraction(self) -> float | None: ...
    @property
    def promote(self) -> Literal["always", "if_better"]: ...


@dataclass(frozen=True)
class Verdict:
    """Whether a candidate replaces the serving model, and why."""

    promoted: bool
    reason: str
    # (version, scores) of the serving model on the candidate's rows, when compared
    champion: tuple[int, Scores] | None = None


@dataclass(frozen=True)
class Candidate:
    """A trained neuron with its scores, and the reasons (if any) not to serve it."""

    result: TrainingResult  # of the neuron to serve: the refit one, if refitted
    duration_seconds: float
    scores: Scores  # on the rows the served neuron trained on
    held_out: Scores | None  # of the validated run on the held-out rows, when some were
    fraction: float  # of each class held out
    warnings: list[str]
    judged_on: tuple[Matrix, Matrix]  # the rows it is compared on: the held-out ones, else all
    refit: bool = False  # trained again on every row once validation had scored it

    @property
    def neuron(self) -> Neuron:
        return self.result.neuron

    @property
    def learning_rate(self) -> float:
        """The one the served neuron trained with."""
        return self.result.learning_rate

    def refusal(self) -> str:
        """Why it is not promoted unless forced."""
        return (
            " ".join(self.warnings) + " The model was not promoted; send force=true to promote it."
        )

    def verdict(self, options: Options, serving: Callable[[], tuple[int, Neuron]]) -> Verdict:
        """Promote, or (if_better) keep the serving (version, neuron) if it is at least as good."""
        ours = self.held_out or self.scores
        where = f"{ours.rows} {'held-out' if self.held_out else 'training'} rows"
        reason = f"promoted: accuracy {ours.accuracy:.4g} on {where}"
        if options.promote != "if_better":
            return Verdict(True, reason)
        version, neuron = serving()
        if neuron.n_inputs != self.neuron.n_inputs:
            return Verdict(
                True,
                f"{reason}; not compared with serving version {version}, which takes "
                f"{neuron.n_inputs} features, not {self.neuron.n_inputs}",
            )
        theirs = score(neuron, *self.judged_on, majority=False)
        versus = (
            f"accuracy {ours.accuracy:.4g} (loss {ours.loss:.4g}) on {where} against "
            f"serving version {version}'s {theirs.accuracy:.4g} "
            f"(loss {theirs.loss:.4g}) on the same rows"
        )
        if not _beats(ours, theirs):
            return Verdict(False, f"not promoted: {versus}", (version, theirs))
        return Verdict(True, f"promoted: {versus}", (version, theirs))


def fit(
    inputs: Matrix,
    targets: Matrix,
    options: Options,
    budget_seconds: float | None,
    progress: Progress | None = None,
) -> Candidate:
    """Hold out, train on the rest, score both, refit on all rows if asked.

    TrainingRejected if the budget runs out (it covers both runs). ``progress`` hears the
    fraction of the whole fit done (both runs, when it refits); it may raise to stop it.
    """
    fraction = _fraction(options, targets)
    split = _split(options, targets, fraction)
    fit_rows, held_rows = split if split else (slice(None), None)
    hidden = _hidden(options, inputs.shape[1])
    started = time.monotonic()
    runs = 2 if held_rows is not None and options.refit else 1
    told = _share(progress, 0, runs)
    result = _train(options, inputs[fit_rows], targets[fit_rows], hidden, budget_seconds, told)
    majority = majority_class(targets[fit_rows])
    scores = score(result.neuron, inputs[fit_rows], targets[fit_rows], majority)
    held, judged_on = None, (inputs, targets)
    if held_rows is not None:
        judged_on = (inputs[held_rows], targets[held_rows])
        held = score(result.neuron, *judged_on, majority)
    refit = held_rows is not None and options.refit
    if refit:
        spent = time.monotonic() - started
        left = None if budget_seconds is None else max(budget_seconds - spent, 0.0)
        told = _share(progress, 1, runs)
        result = _train(options, inputs, targets, hidden, left, told, refit=True)
        scores = score(result.neuron, inputs, targets, majority_class(targets))
    duration = time.monotonic() - started
    warnings = _warnings(result, options, inputs)
    warnings += _gate(held or scores, held is not None, "" if warnings else _hint(options, inputs))
    return Candidate(result, duration, scores, held, fraction, warnings, judged_on, refit)


def _share(progress: Progress | None, run: int, runs: int) -> Progress | None:
    """Progress of one run as a share of the whole fit."""
    if progress is None:
        return None
    return lambda fraction: progress((run + fraction) / runs)


def batch_size(options: Options, rows: int) -> int | None:
    """Rows per step: the request's, else every row up to FULL_BATCH_ROWS, else MINI_BATCH."""
    if options.batch_size is not None:
        return options.batch_size
    return None if rows <= FULL_BATCH_ROWS else MINI_BATCH


def _rate(options: Options, targets: Matrix) -> float:
    """The learning rate: the request's, else STEP_PER_ROW over the rows of one step."""
    if options.learning_rate is not None:
        return options.learning_rate
    rows = len(targets)
    return STEP_PER_ROW / min(rows, batch_size(options, rows) or rows)


def _hidden(options: Options, n_inputs: int) -> HiddenLayer | None:
    """The hidden layer asked for, drawn once: the validated run and the refit share it."""
    spec = options.hidden
    if spec is None:
        return None
    seed = options.seed if spec.seed is None else spec.seed
    return HiddenLayer.draw(n_inputs, spec.units, seed)


def _train(
    options: Options,
    inputs: Matrix,
    targets: Matrix,
    hidden: HiddenLayer | None,
    budget_seconds: float | None,
    progress: Progress | None,
    refit: bool = False,
) -> TrainingResult:
    try:
        return train(
            inputs,
            targets,
            iterations=options.iterations,
            learning_rate=_rate(options, targets),
            seed=options.seed,
            tolerance=options.tolerance,
            budget_seconds=budget_seconds,
            standardize=options.standardize,
            intercept=options.intercept,
            l2=options.l2,
            hidden=hidden,
            batch_size=batch_size(options, len(targets)),
            progress=progress,
        )
    except TrainingTimeout as exc:
        if refit:  # the budget covers both runs: say which one ran out of it
            raise TrainingRejected(
                f"the refit on every row {exc} (what the validated run left of the budget); "
                "send refit=false, or ask for fewer iterations or rows"
            ) from exc
        raise TrainingRejected(
            f"training {exc}; ask for fewer iterations or rows, or set a tolerance"
        ) from exc
    except ValueError as exc:  # a column whose statistics overflow float64
        raise validation_error("cannot standardize", ["inputs"], str(exc)) from None


def _split(options: Options, targets: Matrix, fraction: float) -> tuple[Index, Index] | None:
    """(training rows, held-out rows), or None when nothing is held out."""
    if fraction == 0:
        return None
    try:
        return stratified_split(targets, fraction, options.seed)
    except ValueError as exc:
        raise validation_error(
            "too few rows to hold out", ["validation_fraction"], str(exc)
        ) from None


def _fraction(options: Options, targets: Matrix) -> float:
    if options.validation_fraction is not None:
        return options.validation_fraction
    return default_fraction(targets)


def _wide(inputs: Matrix) -> bool:
    """Features on scales the article's unscaled update cannot share one learning rate over."""
    spans = np.ptp(inputs, axis=0)
    spans = spans[spans > 0]
    return bool(np.abs(inputs).max() > 10 or (len(spans) and spans.max() > 100 * spans.min()))


def _warnings(result: TrainingResult, options: Options, inputs: Matrix) -> list[str]:
    fix = f"try a smaller learning_rate (e.g. {result.learning_rate / 100:g})"
    if not options.standardize and _wide(inputs):
        fix = (
            'the features run over very different or large scales: send "standardize": true '
            f"(the model then scales every raw row itself), or {fix}"
        )
    if result.saturated:
        return [
            f"Training saturated: the outputs are stuck at 0 or 1 with loss {result.loss:.4g}, "
            f"so the gradient vanished; {fix}."
        ]
    if not result.improved:
        return [
            f"Training did not improve: loss went from {result.initial_loss:.4g} to "
            f"{result.loss:.4g}; {fix} or more iterations."
        ]
    return []


def _gate(scores: Scores, held_out: bool, hint: str) -> list[str]:
    """A model no more accurate than a constant answer is not worth serving."""
    if scores.accuracy > scores.baseline_accuracy:
        return []
    rows = f"{scores.rows} {'held-out' if held_out else 'training'} rows"
    return [
        f"Accuracy {scores.accuracy:.4g} on {rows} is not above the majority-class "
        f"baseline {scores.baseline_accuracy:.4g} (always answering the most frequent class)."
        + hint
    ]


# Below this many rows the default penalty can outweigh the data (docs/training.md).
_FEW_ROWS_FOR_L2 = 50


def _hint(options: Options, inputs: Matrix) -> str:
    """What may fix a model that lost to the constant answer, when the settings suggest it."""
    if not options.standardize and _wide(inputs):
        return (
            ' The features run over very different or large scales: send "standardize": true '
            "(the model then scales every raw row itself)."
        )
    if options.l2 and len(inputs) < _FEW_ROWS_FOR_L2:
        return (
            f" With {len(inputs)} rows the l2 penalty ({options.l2:g}) may outweigh the data: "
            'try "l2": 0.'
        )
    return ""


def _beats(ours: Scores, theirs: Scores) -> bool:
    """More accurate, or as accurate with a lower loss."""
    return ours.accuracy > theirs.accuracy or (
        ours.accuracy == theirs.accuracy and ours.loss < theirs.loss
    )
