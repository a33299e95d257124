"""The drift gauges of /metrics, computed at scrape time from the window every worker shares."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .monitor import worst
from .report import DriftReport


class DriftCollector(Collector):
    """The drift gauges, computed at scrape time from the window every worker shares.

    Not multiprocess files: every worker reads the same counts, so any worker's answer is the
    whole service's. Only the `top` worst features get a series of their own.
    """

    def __init__(self, report: Callable[[], DriftReport | None], top: int) -> None:
        self._report = report
        self._top = top

    def collect(self) -> Iterator[GaugeMetricFamily]:
        report = self._report()
        if report is None:
            return
        scores = [f.score for f in report.features if f.score is not None]
        yield _gauge(
            "neuron_input_drift_threshold", "Score above which a feature drifts.", report.threshold
        )
        yield _gauge(
            "neuron_input_drift_window_rows", "Rows predicted in the drift window.", report.rows
        )
        yield _gauge(
            "neuron_input_drift_max_score",
            "Highest feature drift score (NaN until the window has enough rows).",
            max(scores) if scores else math.nan,
        )
        yield _gauge(
            "neuron_input_drift_features_drifting",
            "Features whose drift score is above the threshold.",
            report.drifting,
        )
        score = GaugeMetricFamily(
            "neuron_input_drift_score",
            "Population stability index of the window's rows against the training bins, for "
            "the worst features.",
            labels=["feature"],
        )
        outside = GaugeMetricFamily(
            "neuron_input_drift_out_of_range_ratio",
            "Share of the window's rows outside the training range, for the worst features.",
            labels=["feature"],
        )
        for feature in worst(report, self._top):
            score.add_metric([feature.name], _number(feature.score))
            outside.add_metric([feature.name], _number(feature.out_of_range))
        yield score
        yield outside


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _number(value: float | None) -> float:
    return math.nan if value is None else value
