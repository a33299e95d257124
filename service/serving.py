"""ModelServer: the work below HTTP — predict, evaluate, retrain, rollback, start-up."""

from __future__ import annotations

import logging
import time
from typing import Literal

import numpy as np

from . import metrics
from .current import CurrentModel
from .errors import (
    CorruptModel,
    InsufficientStorage,
    NotFound,
    NotReady,
    PayloadTooLarge,
    StorageUnavailable,
    TrainingRejected,
    validation_error,
)
from .neuron import (
    DEFAULT_LEARNING_RATE,
    DEFAULT_SEED,
    Matrix,
    TrainingResult,
    TrainingTimeout,
    classic_training_set,
    train,
)
from .schemas import (
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
from .store import ModelRecord, TrainingMetadata, data_digest, open_store, utc_now

log = logging.getLogger("neuron.serving")


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
                record = self.store.save_locked(
                    result.neuron, _metadata("default", (inputs, targets), result, duration)
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
            kept_versions=self.store.versions(),
        )

    # -- administration ----------------------------------------------------------------------

    def retrain(self, request: RetrainRequest) -> RetrainResponse:
        """Train without holding the lock; save (locked) only a model worth serving."""
        inputs, targets = _training_data(request)
        self._check_limits(inputs, request.iterations)
        started = time.monotonic()
        try:
            result = train(
                inputs,
                targets,
                iterations=request.iterations,
                learning_rate=request.learning_rate,
                seed=request.seed,
                tolerance=request.tolerance,
                budget_seconds=self.settings.training_budget_seconds,
            )
        except TrainingTimeout as exc:
            metrics.RETRAINS_TOTAL.labels("rejected").inc()
            raise TrainingRejected(
                f"training {exc}; ask for fewer iterations or rows, or set a tolerance"
            ) from exc
        duration = time.monotonic() - started
        metrics.TRAINING_DURATION_SECONDS.observe(duration)
        warnings = _warnings(result, request.learning_rate)
        if warnings and not request.force:
            metrics.RETRAINS_TOTAL.labels("rejected").inc()
            raise TrainingRejected(
                " ".join(warnings) + " The model was not promoted; send force=true to promote it."
            )
        try:
            record = self.store.save(
                result.neuron,
                _metadata(
                    "retrain",
                    (inputs, targets),
                    result,
                    duration,
                    request.seed,
                    request.learning_rate,
                ),
            )
        except Exception:
            metrics.RETRAINS_TOTAL.labels("failed").inc()
            raise
        self.model.set(record)
        metrics.RETRAINS_TOTAL.labels("forced" if warnings else "promoted").inc()
        return RetrainResponse(
            model_version=record.version,
            loss=result.loss,
            initial_loss=result.initial_loss,
            iterations=result.iterations,
            duration_seconds=duration,
            warnings=warnings,
        )

    def rollback(self, request: RollbackRequest) -> ModelInfo:
        """Serve a kept version again, saved as a new version so that newest stays serving."""
        with self.store.lock():
            old = self.record(request.version)
            training = old.document.training.model_copy(
                update={"source": "rollback", "rolled_back_to": old.version}
            )
            record = self.store.save_locked(old.neuron, training)
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


def _warnings(result: TrainingResult, learning_rate: float) -> list[str]:
    smaller = f"try a smaller learning_rate (e.g. {learning_rate / 100:g})"
    if result.saturated:
        return [
            f"Training saturated: the outputs are stuck at 0 or 1 with loss {result.loss:.4g}, "
            f"so the gradient vanished; {smaller}."
        ]
    if not result.improved:
        return [
            f"Training did not improve: loss went from {result.initial_loss:.4g} to "
            f"{result.loss:.4g}; {smaller} or more iterations."
        ]
    return []


def _metadata(
    source: Literal["default", "retrain"],
    data: tuple[Matrix, Matrix],
    result: TrainingResult,
    duration: float,
    seed: int = DEFAULT_SEED,
    learning_rate: float = DEFAULT_LEARNING_RATE,
) -> TrainingMetadata:
    return TrainingMetadata(
        source=source,
        seed=seed,
        iterations=result.iterations,
        learning_rate=learning_rate,
        loss=result.loss,
        initial_loss=result.initial_loss,
        rows=len(data[0]),
        data_sha256=data_digest(*data),
        trained_at=utc_now(),
        duration_seconds=duration,
    )


def _count_corrupt(version: int, reason: str) -> None:
    metrics.MODEL_LOAD_FAILURES_TOTAL.inc()
