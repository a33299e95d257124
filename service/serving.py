"""ModelServer: the work below HTTP — predict, evaluate, retrain, rollback, start-up."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from . import metrics
from .errors import (
    CorruptModel,
    InsufficientStorage,
    NotFound,
    NotReady,
    PayloadTooLarge,
    ServiceError,
    StorageUnavailable,
    TrainingRejected,
    validation_error,
)
from .model.neuron import (
    DEFAULT_LEARNING_RATE,
    DEFAULT_SEED,
    Matrix,
    TrainingResult,
    TrainingTimeout,
    classic_training_set,
    train,
)
from .model.validation import (
    Index,
    Scores,
    default_fraction,
    majority_class,
    score,
    stratified_split,
)
from .schemas import (
    Champion,
    EvaluateRequest,
    EvaluateResponse,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    RetrainRequest,
    RetrainResponse,
    RollbackRequest,
)
from .settings import Settings
from .store import ModelRecord, TrainingMetadata, Validation, data_digest, open_store, utc_now
from .store.current import CurrentModel

log = logging.getLogger("neuron.serving")


@dataclass(frozen=True)
class Decision:
    """What a retrain ends with: the record serving now, and why."""

    record: ModelRecord
    promoted: bool
    reason: str
    champion: Champion | None


class ModelServer:
    """Owns the store and this process's current model; knows nothing of HTTP."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = open_store(
            settings.store(),
            settings.model_dir,
            settings.keep_versions,
            _count_corrupt,
            metrics.store_up,
        )
        metrics.store_up(self.store.up())
        self.model = CurrentModel(self.store, metrics.model_swapped)

    # -- start-up ----------------------------------------------------------------------------

    def start(self) -> ModelRecord:
        """Load the newest valid version, or train the defaults and save them exactly once."""
        try:
            record = self._start_locked()
        except (OSError, StorageUnavailable, InsufficientStorage) as exc:
            # e.g. a read-only model directory: serve what is there
            log.error("model store not writable (%s): loading without the lock", exc)
            fallback = self.store.load_latest_valid()
            if fallback is None:
                raise
            record = fallback
        self.model.set(record)
        log.info("serving model version %d", record.version)
        return record

    def _start_locked(self) -> ModelRecord:
        with self.store.lock():
            record = self.store.point_to_latest_locked()
            if record is None:
                log.info("no valid model stored: training the defaults")
                inputs, targets = classic_training_set()
                started = time.monotonic()
                result = train(inputs, targets)
                duration = time.monotonic() - started
                scores = score(result.neuron, inputs, targets, majority_class(targets))
                record = self.store.save_locked(
                    result.neuron,
                    _metadata("default", (inputs, targets), result, duration, scores),
                )
        return record

    def ready(self) -> ModelRecord:
        """The serving record, trying start() again if an earlier start failed."""
        if self.model.peek() is None:
            try:
                return self.start()
            except Exception as exc:
                raise NotReady(f"no model is loaded: {exc}") from exc
        return self.model.get()

    def serving_version(self) -> int | None:
        """The serving version, or None while no model can be loaded (never raises)."""
        try:
            return self.ready().version
        except ServiceError:
            return None

    # -- inference ---------------------------------------------------------------------------

    def infer(self, inputs: Matrix, version: int | None = None) -> tuple[Matrix, ModelRecord]:
        """The one predict core: probabilities of the serving (or a kept) version, counted."""
        record = self.record(version)
        probabilities = record.neuron(_checked_width(inputs, record))
        metrics.predicted(probabilities)
        return probabilities, record

    def predict(self, request: PredictRequest) -> PredictResponse:
        probabilities, record = self.infer(request.inputs)
        # model_construct: the array goes to orjson as is, not as 10,000 Python floats.
        return PredictResponse.model_construct(
            predictions=probabilities,  # type: ignore[arg-type]
            model_version=record.version,
        )

    def record(self, version: int | None = None) -> ModelRecord:
        """The serving record, or a kept version's; NotFound if absent or damaged."""
        current = self.model.get()
        if version is None or version == current.version:
            return current
        try:
            return self.store.read(version)
        except CorruptModel as exc:
            self.store.quarantine(version, str(exc))
            raise NotFound(f"model version {version} is damaged and was quarantined") from exc

    def evaluate(self, request: EvaluateRequest) -> EvaluateResponse:
        record = self.model.get()
        probabilities = record.neuron(_checked_width(request.inputs, record))
        targets = request.targets[:, 0]
        squared = (targets - probabilities) ** 2
        accuracy = float(np.mean((probabilities >= 0.5) == (targets >= 0.5)))
        metrics.evaluated(squared, accuracy)
        return EvaluateResponse(
            loss=float(squared.mean()),
            accuracy=accuracy,
            rows=len(targets),
            model_version=record.version,
        )

    def info(self) -> ModelInfo:
        record = self.model.get()
        document = record.document
        return ModelInfo(
            version=document.version,
            n_inputs=document.n_inputs,
            weights=document.weights,
            training=document.training,
            scaling=document.scaling,
            feature_names=document.feature_names,
            kept_versions=self.store.versions(),
        )

    # -- administration ----------------------------------------------------------------------

    def retrain(self, request: RetrainRequest) -> RetrainResponse:
        """Train without holding the lock; save (locked) only a model worth serving."""
        inputs, targets = _training_data(request)
        self._check_limits(inputs, request.iterations)
        split = _split(request, targets)
        fit, held_out = split if split else (slice(None), None)
        started = time.monotonic()
        result = self._train(request, inputs[fit], targets[fit])
        duration = time.monotonic() - started
        metrics.TRAINING_DURATION_SECONDS.observe(duration)
        majority = majority_class(targets[fit])
        scores = score(result.neuron, inputs[fit], targets[fit], majority)
        held = None
        if held_out is not None:
            held = score(result.neuron, inputs[held_out], targets[held_out], majority)
        warnings = _warnings(result, request, inputs) + _gate(held or scores, held is not None)
        if warnings and not request.force:
            metrics.RETRAINS_TOTAL.labels("rejected").inc()
            raise TrainingRejected(
                " ".join(warnings) + " The model was not promoted; send force=true to promote it."
            )
        training = _metadata("retrain", (inputs, targets), result, duration, scores, request)
        training = training.model_copy(
            update={
                "validation_fraction": 0.0 if split is None else _fraction(request, targets),
                "validation": None if held is None else Validation(**asdict(held)),
            }
        )
        judged = (inputs, targets) if held_out is None else (inputs[held_out], targets[held_out])
        try:
            decision = self._promote(request, result, training, judged, held or scores)
        except Exception:
            metrics.RETRAINS_TOTAL.labels("failed").inc()
            raise
        self.model.set(decision.record)
        outcome = "forced" if warnings else "promoted"
        metrics.RETRAINS_TOTAL.labels(outcome if decision.promoted else "declined").inc()
        return RetrainResponse(
            model_version=decision.record.version,
            promoted=decision.promoted,
            reason=decision.reason,
            loss=result.loss,
            initial_loss=result.initial_loss,
            iterations=result.iterations,
            duration_seconds=duration,
            accuracy=scores.accuracy,
            baseline_accuracy=scores.baseline_accuracy,
            validation=training.validation,
            standardized=request.standardize,
            champion=decision.champion,
            warnings=warnings,
        )

    def _train(self, request: RetrainRequest, inputs: Matrix, targets: Matrix) -> TrainingResult:
        try:
            return train(
                inputs,
                targets,
                iterations=request.iterations,
                learning_rate=request.learning_rate,
                seed=request.seed,
                tolerance=request.tolerance,
                budget_seconds=self.settings.training_budget_seconds,
                standardize=request.standardize,
            )
        except TrainingTimeout as exc:
            metrics.RETRAINS_TOTAL.labels("rejected").inc()
            raise TrainingRejected(
                f"training {exc}; ask for fewer iterations or rows, or set a tolerance"
            ) from exc
        except ValueError as exc:  # a column whose statistics overflow float64
            raise validation_error("cannot standardize", ["inputs"], str(exc)) from None

    def _promote(
        self,
        request: RetrainRequest,
        result: TrainingResult,
        training: TrainingMetadata,
        rows: tuple[Matrix, Matrix],
        ours: Scores,
    ) -> Decision:
        """Save the new model, or keep the serving one when it is at least as good (if_better).

        Under the writers' lock, so the serving model compared is the one replaced.
        """
        where = f"{ours.rows} {'held-out' if training.validation else 'training'} rows"
        reason = f"promoted: accuracy {ours.accuracy:.4g} on {where}"
        champion = None
        with self.store.lock():
            if request.promote == "if_better":
                current = self.model.get()
                if current.neuron.n_inputs != result.neuron.n_inputs:
                    reason += (
                        f"; not compared with serving version {current.version}, which takes "
                        f"{current.neuron.n_inputs} features, not {result.neuron.n_inputs}"
                    )
                else:
                    theirs = score(current.neuron, *rows, majority=False)
                    champion = Champion(
                        version=current.version,
                        rows=theirs.rows,
                        loss=theirs.loss,
                        accuracy=theirs.accuracy,
                    )
                    versus = (
                        f"accuracy {ours.accuracy:.4g} (loss {ours.loss:.4g}) on {where} against "
                        f"serving version {current.version}'s {theirs.accuracy:.4g} "
                        f"(loss {theirs.loss:.4g}) on the same rows"
                    )
                    if not _beats(ours, theirs):
                        return Decision(current, False, f"not promoted: {versus}", champion)
                    reason = f"promoted: {versus}"
            record = self.store.save_locked(result.neuron, training, request.feature_names)
        return Decision(record, True, reason, champion)

    def rollback(self, request: RollbackRequest) -> ModelInfo:
        """Serve a kept version again, saved as a new version so that newest stays serving."""
        with self.store.lock():
            old = self.record(request.version)
            training = old.document.training.model_copy(
                update={"source": "rollback", "rolled_back_to": old.version}
            )
            record = self.store.save_locked(old.neuron, training, old.document.feature_names)
        self.model.set(record)
        return self.info()

    def _check_limits(self, inputs: Matrix, iterations: int) -> None:
        rows, width = inputs.shape
        limits = self.settings
        if rows > limits.max_train_rows:
            raise PayloadTooLarge(f"at most {limits.max_train_rows} training rows are allowed")
        if width > limits.max_inputs:
            raise validation_error(
                "too many inputs", ["inputs"], f"at most {limits.max_inputs} features per row"
            )
        if iterations > limits.max_iterations:
            raise validation_error(
                "too many iterations",
                ["iterations"],
                f"at most {limits.max_iterations} iterations are allowed",
            )
        if rows * width * iterations > limits.max_training_work:
            raise validation_error(
                "training too large",
                ["iterations"],
                f"rows x inputs x iterations must stay under {limits.max_training_work}",
            )


def _checked_width(inputs: Matrix, record: ModelRecord) -> Matrix:
    if inputs.shape[1] != record.neuron.n_inputs:
        raise validation_error(
            "inputs do not fit the model",
            ["inputs"],
            f"model version {record.version} takes rows of {record.neuron.n_inputs} numbers, "
            f"got {inputs.shape[1]}",
        )
    return inputs


def _training_data(request: RetrainRequest) -> tuple[Matrix, Matrix]:
    if request.inputs is None or request.targets is None:
        return classic_training_set()
    return request.inputs, request.targets


def _split(request: RetrainRequest, targets: Matrix) -> tuple[Index, Index] | None:
    """(training rows, held-out rows), or None when nothing is held out."""
    fraction = _fraction(request, targets)
    if fraction == 0:
        return None
    try:
        return stratified_split(targets, fraction, request.seed)
    except ValueError as exc:
        raise validation_error(
            "too few rows to hold out", ["validation_fraction"], str(exc)
        ) from None


def _fraction(request: RetrainRequest, targets: Matrix) -> float:
    if request.validation_fraction is not None:
        return request.validation_fraction
    return default_fraction(targets)


def _wide(inputs: Matrix) -> bool:
    """Features on scales the article's unscaled update cannot share one learning rate over."""
    spans = np.ptp(inputs, axis=0)
    spans = spans[spans > 0]
    return bool(np.abs(inputs).max() > 10 or (len(spans) and spans.max() > 100 * spans.min()))


def _warnings(result: TrainingResult, request: RetrainRequest, inputs: Matrix) -> list[str]:
    fix = f"try a smaller learning_rate (e.g. {request.learning_rate / 100:g})"
    if not request.standardize and _wide(inputs):
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


def _gate(scores: Scores, held_out: bool) -> list[str]:
    """A model no more accurate than a constant answer is not worth serving."""
    if scores.accuracy > scores.baseline_accuracy:
        return []
    rows = f"{scores.rows} {'held-out' if held_out else 'training'} rows"
    return [
        f"Accuracy {scores.accuracy:.4g} on {rows} is not above the majority-class "
        f"baseline {scores.baseline_accuracy:.4g} (always answering the most frequent class)."
    ]


def _beats(ours: Scores, theirs: Scores) -> bool:
    """More accurate, or as accurate with a lower loss."""
    return ours.accuracy > theirs.accuracy or (
        ours.accuracy == theirs.accuracy and ours.loss < theirs.loss
    )


def _metadata(
    source: Literal["default", "retrain"],
    data: tuple[Matrix, Matrix],
    result: TrainingResult,
    duration: float,
    scores: Scores,
    request: RetrainRequest | None = None,
) -> TrainingMetadata:
    return TrainingMetadata(
        source=source,
        seed=DEFAULT_SEED if request is None else request.seed,
        iterations=result.iterations,
        learning_rate=DEFAULT_LEARNING_RATE if request is None else request.learning_rate,
        loss=result.loss,
        initial_loss=result.initial_loss,
        rows=scores.rows,
        data_sha256=data_digest(*data),
        trained_at=utc_now(),
        duration_seconds=duration,
        accuracy=scores.accuracy,
        baseline_accuracy=scores.baseline_accuracy,
    )


def _count_corrupt(version: int, reason: str) -> None:
    metrics.MODEL_LOAD_FAILURES_TOTAL.inc()
