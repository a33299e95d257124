"""ModelServer: the work below HTTP — predict, evaluate, retrain, rollback, start-up."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Literal

import numpy as np

from . import metrics
from .drift import DriftMonitor, DriftReport
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
from .model import policy
from .model.neuron import Matrix, Neuron, Progress, classic_training_set
from .model.statistics import describe
from .model.validation import Scores
from .schemas import (
    Champion,
    EvaluateRequest,
    EvaluateResponse,
    HiddenInfo,
    HiddenRequest,
    ModelInfo,
    RetrainRequest,
    RetrainResponse,
    RollbackRequest,
)
from .settings import Settings
from .store import (
    ModelRecord,
    StoredFeatureStatistics,
    TrainingMetadata,
    Validation,
    data_digest,
    open_store,
    utc_now,
)
from .store.current import CurrentModel

log = logging.getLogger("neuron.serving")
# The start-up model: the article's neuron and loop, its figure to the last digit.
ARTICLE = RetrainRequest(intercept=False, l2=0.0, learning_rate=1.0)


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
        self.drift = DriftMonitor(settings, metrics.shared_dir())

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
                data = classic_training_set()
                candidate = policy.fit(*data, ARTICLE, budget_seconds=None)
                training = _metadata("default", data, candidate, ARTICLE, self.settings.drift_bins)
                record = self.store.save_locked(candidate.neuron, training)
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
        self.drift.observe(inputs, record)
        return probabilities, record

    def predict(self, inputs: Matrix) -> dict[str, Any]:
        """PredictResponse's fields, the array as is (for orjson, not 10,000 Python floats)."""
        probabilities, record = self.infer(inputs)
        return {"predictions": probabilities, "model_version": record.version}

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
            bias=document.bias,
            hidden=None
            if document.hidden is None
            else HiddenInfo(
                units=document.hidden.units,
                activation=document.hidden.activation,
                seed=document.hidden.seed,
            ),
            kept_versions=self.store.versions(),
        )

    def drift_report(self) -> DriftReport:
        """The serving model's input drift over the recent window, every worker's rows."""
        return self.drift.report(self.model.get())

    def drift_report_if_ready(self) -> DriftReport | None:
        """drift_report(), or None while no model is loaded: a scrape never starts one."""
        return None if self.model.peek() is None else self.drift_report()

    # -- administration ----------------------------------------------------------------------

    def retrain(self, request: RetrainRequest) -> RetrainResponse:
        """A synchronous retrain, within the limits of one request."""
        data = _training_data(request)
        limits = self.settings
        self._check_limits(data[0], request, limits.max_train_rows, limits.max_training_work)
        return self._retrain(data, request, limits.training_budget_seconds)

    def train_job(
        self, request: RetrainRequest, progress: Progress, before_save: Callable[[], None]
    ) -> RetrainResponse:
        """A training job's retrain: the jobs' limits and budget; ``before_save`` may veto."""
        data = _training_data(request)
        self._check_limits(data[0], request, self.settings.max_job_rows, None)
        return self._retrain(data, request, self.settings.job_budget_seconds, progress, before_save)

    def _retrain(
        self,
        data: tuple[Matrix, Matrix],
        request: RetrainRequest,
        budget_seconds: float,
        progress: Progress | None = None,
        before_save: Callable[[], None] | None = None,
    ) -> RetrainResponse:
        """Train without holding the lock; save (locked) only a model worth serving."""
        try:
            candidate = policy.fit(*data, request, budget_seconds, progress)
        except TrainingRejected:
            metrics.RETRAINS_TOTAL.labels("rejected").inc()
            raise
        metrics.TRAINING_DURATION_SECONDS.observe(candidate.duration_seconds)
        if candidate.warnings and not request.force:
            metrics.RETRAINS_TOTAL.labels("rejected").inc()
            raise TrainingRejected(candidate.refusal())
        training = _metadata("retrain", data, candidate, request, self.settings.drift_bins)
        try:
            record, verdict = self._promote(request, candidate, training, before_save)
        except Exception:
            metrics.RETRAINS_TOTAL.labels("failed").inc()
            raise
        self.model.set(record)
        outcome = "forced" if candidate.warnings else "promoted"
        metrics.RETRAINS_TOTAL.labels(outcome if verdict.promoted else "declined").inc()
        return _retrain_response(record, candidate, verdict, training, request)

    def _promote(
        self,
        request: RetrainRequest,
        candidate: policy.Candidate,
        training: TrainingMetadata,
        before_save: Callable[[], None] | None,
    ) -> tuple[ModelRecord, policy.Verdict]:
        """Under the writers' lock, so the serving model compared is the one replaced."""
        with self.store.lock():
            if before_save is not None:
                before_save()
            verdict = candidate.verdict(request, self._serving_neuron)
            if not verdict.promoted:
                return self.model.get(), verdict
            record = self.store.save_locked(candidate.neuron, training, request.feature_names)
        return record, verdict

    def _serving_neuron(self) -> tuple[int, Neuron]:
        record = self.model.get()
        return record.version, record.neuron

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

    def _check_limits(
        self, inputs: Matrix, request: RetrainRequest, max_rows: int, max_work: int | None
    ) -> None:
        rows, width = inputs.shape
        limits, iterations = self.settings, request.iterations
        if rows > max_rows:
            raise PayloadTooLarge(f"at most {max_rows} training rows are allowed")
        if width > limits.max_inputs:
            raise validation_error(
                "too many inputs", ["inputs"], f"at most {limits.max_inputs} features per row"
            )
        check_iterations(request, limits)
        trained = width if request.hidden is None else self._hidden_width(width, request.hidden)
        if max_work is None:
            return
        if rows * (trained + request.intercept) * iterations > max_work:
            raise validation_error(
                "training too large",
                ["iterations"],
                f"rows x trained weights x iterations must stay under {max_work}"
                " (the trained weights: one per input, or per hidden unit, and the bias)",
            )

    def _hidden_width(self, width: int, hidden: HiddenRequest) -> int:
        """The hidden layer's units, within the limits on its size."""
        limits = self.settings
        if hidden.units > limits.max_hidden_units:
            raise validation_error(
                "hidden layer too large",
                ["hidden", "units"],
                f"at most {limits.max_hidden_units} hidden units are allowed",
            )
        if hidden.units * width > limits.max_hidden_weights:
            raise validation_error(
                "hidden layer too large",
                ["hidden", "units"],
                f"units x features must stay under {limits.max_hidden_weights}: "
                f"{hidden.units} x {width} is {hidden.units * width}",
            )
        return hidden.units


def check_iterations(request: RetrainRequest, settings: Settings) -> None:
    """The one limit a retrain's settings alone break (a job checks it before its body)."""
    if request.iterations > settings.max_iterations:
        raise validation_error(
            "too many iterations",
            ["iterations"],
            f"at most {settings.max_iterations} iterations are allowed",
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


def _metadata(
    source: Literal["default", "retrain"],
    data: tuple[Matrix, Matrix],
    candidate: policy.Candidate,
    options: RetrainRequest,
    bins: int,
) -> TrainingMetadata:
    result, scores, held = candidate.result, candidate.scores, candidate.held_out
    statistics = [StoredFeatureStatistics.of(feature) for feature in describe(data[0], bins)]
    return TrainingMetadata(
        source=source,
        seed=options.seed,
        iterations=result.iterations,
        learning_rate=candidate.learning_rate,
        loss=result.loss,
        initial_loss=result.initial_loss,
        rows=scores.rows,
        data_sha256=data_digest(*data),
        trained_at=utc_now(),
        duration_seconds=candidate.duration_seconds,
        accuracy=scores.accuracy,
        baseline_accuracy=scores.baseline_accuracy,
        validation_fraction=candidate.fraction,
        validation=None if held is None else Validation(**asdict(held)),
        l2=options.l2,
        refit=candidate.refit,
        input_statistics=statistics,
    )


def _retrain_response(
    record: ModelRecord,
    candidate: policy.Candidate,
    verdict: policy.Verdict,
    training: TrainingMetadata,
    request: RetrainRequest,
) -> RetrainResponse:
    result, scores, champion = candidate.result, candidate.scores, verdict.champion
    return RetrainResponse(
        model_version=record.version,
        promoted=verdict.promoted,
        reason=verdict.reason,
        loss=result.loss,
        initial_loss=result.initial_loss,
        iterations=result.iterations,
        duration_seconds=candidate.duration_seconds,
        accuracy=scores.accuracy,
        baseline_accuracy=scores.baseline_accuracy,
        validation=training.validation,
        standardized=request.standardize,
        champion=None if champion is None else _champion(*champion),
        warnings=candidate.warnings,
    )


def _champion(version: int, scores: Scores) -> Champion:
    return Champion(version=version, rows=scores.rows, loss=scores.loss, accuracy=scores.accuracy)


def _count_corrupt(version: int, reason: str) -> None:
    metrics.MODEL_LOAD_FAILURES_TOTAL.inc()
