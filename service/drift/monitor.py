"""DriftMonitor: counts predicted rows in the serving model's training bins, and scores them."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..model.neuron import Matrix
from ..model.statistics import sample
from ..settings import Settings
from ..store import ModelRecord
from .batcher import Batcher
from .report import DriftReport, FeatureDrift
from .score import stability_index
from .window import Window

log = logging.getLogger("neuron.drift")


class DriftMonitor:
    """What the serving path calls per prediction, and what /model/drift and /metrics read."""

    def __init__(self, settings: Settings, directory: Path | None) -> None:
        self.enabled = settings.drift_enabled
        self.threshold = settings.drift_threshold
        self.min_rows = settings.drift_min_rows
        self.window_seconds = settings.drift_window_seconds
        self._window = Window(directory, settings.drift_window_seconds)
        self._batcher = Batcher(self._count)
        self._failed = False

    def observe(self, inputs: Matrix, record: ModelRecord) -> None:
        """Hand the rows (a sample of a big batch) to this worker's counting thread."""
        if record.bins is not None and self.enabled:
            self._batcher.add(record, *sample(inputs))

    def _count(self, record: ModelRecord, rows: Matrix, weight: float) -> None:
        """In the counting thread; a failure (a full /dev/shm) costs counts, never answers."""
        assert record.bins is not None
        try:
            self._window.add_counts(record.version, record.bins.counts(rows, weight))
        except OSError as exc:
            if not self._failed:
                log.error("input drift counting failed, rows go uncounted: %s", exc)
            self._failed = True

    def report(self, record: ModelRecord) -> DriftReport:
        names = record.document.feature_names or [f"x{i}" for i in range(record.neuron.n_inputs)]
        bins = record.bins
        if bins is None:
            return self._report(record, names, 0, [None] * len(names), [None] * len(names))
        self._batcher.flush()
        table = self._window.totals(record.version, bins.n_features * bins.width)
        table = table.reshape(bins.n_features, bins.width)
        live = table[:, : bins.bins]
        rows = round(float(live[0].sum()))  # weighted: a sampled row stands for several
        if rows < self.min_rows or not self.enabled:
            return self._report(record, names, rows, [None] * len(names), [None] * len(names))
        scores = stability_index(live, bins.expected, bins.used)
        outside = (table[:, bins.bins] + table[:, bins.bins + 1]) / rows
        return self._report(record, names, rows, scores.tolist(), outside.tolist())

    def _report(
        self,
        record: ModelRecord,
        names: list[str],
        rows: int,
        scores: list[float | None],
        outside: list[float | None],
    ) -> DriftReport:
        features = [
            FeatureDrift(
                name=name,
                score=score,
                drifting=score is not None and score > self.threshold,
                out_of_range=share,
            )
            for name, score, share in zip(names, scores, outside, strict=True)
        ]
        drifting = sum(feature.drifting for feature in features)
        return DriftReport(
            model_version=record.version,
            baseline=record.bins is not None,
            message=self._message(record, rows),
            threshold=self.threshold,
            window_seconds=self.window_seconds,
            rows=rows,
            min_rows=self.min_rows,
            drifting=drifting,
            features=features,
        )

    def _message(self, record: ModelRecord, rows: int) -> str:
        if record.bins is None:
            return (
                f"model version {record.version} was stored before training statistics were: "
                "no drift baseline (retrain to get one)"
            )
        if not self.enabled:
            return "drift counting is off (NEURON_DRIFT_ENABLED=false)"
        if rows < self.min_rows:
            return f"{rows} rows in the window: scores need at least {self.min_rows}"
        return (
            f"population stability index of the last {self.window_seconds:g} s of predicted "
            "rows against the training rows' bins"
        )


def worst(report: DriftReport, count: int) -> list[FeatureDrift]:
    """The `count` features with the highest scores (unscored ones last, in model order)."""
    keys = [1.0 if f.score is None else -f.score for f in report.features]
    order = np.argsort(keys, kind="stable")
    return [report.features[i] for i in order[:count]]
