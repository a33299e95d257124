"""Prometheus metrics: module-level constants, and the /metrics body (multiprocess-aware)."""

from __future__ import annotations

import math
import os
from bisect import bisect_left
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector

from .store import ModelRecord

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
_FEW = 8  # up to here, observe() per value is cheaper than the numpy pass (3 vs 14 us for 1)
PROBABILITY_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))

REQUEST_DURATION_SECONDS = Histogram(
    "neuron_http_request_duration_seconds",
    "Time from request start to response, by route template, method and status code.",
    ["endpoint", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
REQUESTS_IN_FLIGHT = Gauge(
    "neuron_http_requests_in_flight",
    "Requests being handled now, summed over live workers.",
    multiprocess_mode="livesum",
)
PREDICTIONS_TOTAL = Counter("neuron_predictions", "Rows predicted.")
PREDICTED_PROBABILITY = Histogram(
    "neuron_predicted_probability",
    "Distribution of the probabilities the model answered with.",
    buckets=PROBABILITY_BUCKETS,
)
MODEL_VERSION = Gauge(
    "neuron_model_version", "Version the workers serve.", multiprocess_mode="mostrecent"
)
MODEL_INPUTS = Gauge(
    "neuron_model_inputs", "Inputs of the serving model.", multiprocess_mode="mostrecent"
)
MODEL_TRAINING_LOSS = Gauge(
    "neuron_model_training_loss",
    "Mean squared error of the serving model on its own training data.",
    multiprocess_mode="mostrecent",
)
# Per model, like the version: every worker writes the same value, the newest write wins.
MODEL_VALIDATION_ACCURACY = Gauge(
    "neuron_model_validation_accuracy",
    "Accuracy of the serving model on its held-out validation rows (NaN without a split).",
    multiprocess_mode="mostrecent",
)
MODEL_VALIDATION_LOSS = Gauge(
    "neuron_model_validation_loss",
    "Mean squared error of the serving model on its held-out rows (NaN without a split).",
    multiprocess_mode="mostrecent",
)
MODEL_VALIDATION_BASELINE_ACCURACY = Gauge(
    "neuron_model_validation_baseline_accuracy",
    "Accuracy of always answering the majority class on the same held-out rows (NaN without).",
    multiprocess_mode="mostrecent",
)
JOB_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
TRAINING_JOBS_TOTAL = Counter(
    "neuron_training_jobs", "Training jobs ended, by outcome (succeeded, failed, cancelled).",
    ["outcome"],
)  # fmt: skip
TRAINING_JOB_DURATION_SECONDS = Histogram(
    "neuron_training_job_duration_seconds",
    "Time from a job's start to its end (reading its body included), by outcome.",
    ["outcome"],
    buckets=JOB_BUCKETS,
)
MODEL_LOAD_FAILURES_TOTAL = Counter(
    "neuron_model_load_failures", "Stored versions found damaged and quarantined."
)
STORE_UP = Gauge(
    "neuron_store_up",
    "1 while the model store answers, 0 while it is unreachable (the minimum over workers).",
    multiprocess_mode="livemin",
)
RETRAINS_TOTAL = Counter("neuron_retrains", "Retrain requests by outcome.", ["outcome"])
TRAINING_DURATION_SECONDS = Histogram(
    "neuron_training_duration_seconds",
    "Wall-clock time of training runs.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0),
)
EVALUATION_LOSS = Gauge(
    "neuron_evaluation_loss",
    "Mean squared error of the latest /evaluate call (observed error on labelled data).",
    multiprocess_mode="mostrecent",
)
EVALUATION_ACCURACY = Gauge(
    "neuron_evaluation_accuracy",
    "Accuracy at 0.5 of the latest /evaluate call.",
    multiprocess_mode="mostrecent",
)
EVALUATION_ROWS_TOTAL = Counter("neuron_evaluation_rows", "Labelled rows evaluated.")
EVALUATION_SQUARED_ERROR_TOTAL = Counter(
    "neuron_evaluation_squared_error",
    "Sum of squared errors over evaluated rows; divide rates by the rows' for a windowed MSE.",
)

for _outcome in ("promoted", "forced", "declined", "rejected", "failed"):
    RETRAINS_TOTAL.labels(_outcome)


def observe_many(histogram: Histogram, values: NDArray[np.float64]) -> None:
    """Histogram.observe for a whole batch in O(buckets) numpy passes, not O(rows) Python calls.

    client_python has no bulk observe; this fills the same per-bucket values observe()
    would (its buckets are stored non-cumulative), which a unit test checks.
    """
    if len(values) <= _FEW:  # observe()'s own test (value <= bound), found by bisection
        few = values.tolist()
        for value in few:
            histogram._buckets[bisect_left(histogram._upper_bounds, value)].inc(1)
        histogram._sum.inc(math.fsum(few))
        return
    # One vectorised `value <= bound` count per bound, as observe() tests each value; for
    # 10,000 values and 11 buckets 2x cheaper than a searchsorted + bincount (branchy search).
    below = 0
    for bound, bucket in zip(histogram._upper_bounds, histogram._buckets, strict=True):
        upto = int(np.count_nonzero(values <= bound))
        if upto > below:
            bucket.inc(upto - below)
            below = upto
    histogram._sum.inc(float(values.sum()))


def model_swapped(record: ModelRecord) -> None:
    MODEL_VERSION.set(record.version)
    MODEL_INPUTS.set(record.document.n_inputs)
    MODEL_TRAINING_LOSS.set(record.document.training.loss)
    validation = record.document.training.validation
    # NaN, not the previous model's figures, when this one was not validated.
    MODEL_VALIDATION_ACCURACY.set(math.nan if validation is None else validation.accuracy)
    MODEL_VALIDATION_LOSS.set(math.nan if validation is None else validation.loss)
    MODEL_VALIDATION_BASELINE_ACCURACY.set(
        math.nan if validation is None else validation.baseline_accuracy
    )


def store_up(up: bool) -> None:
    STORE_UP.set(1 if up else 0)


def predicted(probabilities: NDArray[np.float64]) -> None:
    PREDICTIONS_TOTAL.inc(len(probabilities))
    observe_many(PREDICTED_PROBABILITY, probabilities)


def evaluated(squared_errors: NDArray[np.float64], accuracy: float) -> None:
    EVALUATION_ROWS_TOTAL.inc(len(squared_errors))
    EVALUATION_SQUARED_ERROR_TOTAL.inc(float(squared_errors.sum()))
    EVALUATION_LOSS.set(float(squared_errors.mean()))
    EVALUATION_ACCURACY.set(accuracy)


def shared_dir() -> Path | None:
    """Where the workers' drift counts go: beside client_python's multiprocess files."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(directory) / "drift" if directory else None


def render(*extra: Collector) -> tuple[bytes, str]:
    """The exposition text. Under gunicorn, merge every worker's files as client_python says."""
    # The library itself keys multiprocess mode on this variable; we follow its contract.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    if extra:
        computed = CollectorRegistry(auto_describe=False)
        for collector in extra:
            computed.register(collector)
        body += generate_latest(computed)
    return body, CONTENT_TYPE_LATEST
