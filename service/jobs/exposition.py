"""The jobs gauge of /metrics, read from the board at scrape time (any worker answers alike)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..errors import ServiceError

ACTIVE = ("queued", "running")


class JobsCollector(Collector):
    def __init__(self, states: Callable[[], list[str]]) -> None:
        self._states = states  # the state of every recent job

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            states = self._states()
        except ServiceError:  # the store is down: /metrics still answers, without this gauge
            return
        gauge = GaugeMetricFamily(
            "neuron_training_jobs", "Training jobs queued and running now.", labels=["state"]
        )
        for state in ACTIVE:
            gauge.add_metric([state], states.count(state))
        yield gauge
