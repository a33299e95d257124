"""Metric helpers: bulk histogram observation, and what requests leave in the registry."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry, Histogram, multiprocess, values
from prometheus_client.parser import text_string_to_metric_families

from service import metrics


def _samples(histogram: Histogram, registry: CollectorRegistry) -> dict[tuple, float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


@pytest.mark.parametrize("size", [1, 8, 9, 1000])
def test_observe_many_equals_one_observe_per_value(size: int) -> None:
    values = np.concatenate([np.random.default_rng(2).uniform(size=size), [0.0, 0.1, 0.5, 1.0]])
    bulk_registry, single_registry = CollectorRegistry(), CollectorRegistry()
    bulk = Histogram("p", "p", buckets=metrics.PROBABILITY_BUCKETS, registry=bulk_registry)
    single = Histogram("p", "p", buckets=metrics.PROBABILITY_BUCKETS, registry=single_registry)
    metrics.observe_many(bulk, values)
    for value in values:
        single.observe(float(value))
    got, want = _samples(bulk, bulk_registry), _samples(single, single_registry)
    assert got.keys() == want.keys()
    for key, value in want.items():
        if key[0].endswith("_sum"):
            assert np.isclose(got[key], value)
        else:
            assert got[key] == value


# Every bound exactly, either side of each, outside the range (infinities: see the NaN test).
_EDGES = sorted(
    {b + d for b in metrics.LATENCY_BUCKETS + metrics.PROBABILITY_BUCKETS for d in (-1e-9, 0, 1e-9)}
    | {-1e300, -1.0, 0.0, 1e-12, 31.0, 1e300}
)


@pytest.mark.parametrize("buckets", [metrics.LATENCY_BUCKETS, metrics.PROBABILITY_BUCKETS])
def test_observe_fills_what_client_pythons_observe_fills(buckets: tuple[float, ...]) -> None:
    """Labelled children, as the request histogram uses them; sums compared exactly."""
    values_ = [*_EDGES, *np.random.default_rng(3).uniform(-0.1, 35, size=500).tolist()]
    fast_registry, reference_registry = CollectorRegistry(), CollectorRegistry()
    fast = Histogram("h", "h", ["l"], buckets=buckets, registry=fast_registry)
    reference = Histogram("h", "h", ["l"], buckets=buckets, registry=reference_registry)
    for value in values_:
        metrics.observe(fast.labels("a"), value)
        reference.labels("a").observe(value)
    assert _samples(fast, fast_registry) == _samples(reference, reference_registry)


@pytest.mark.parametrize("special", [math.nan, math.inf, -math.inf])
def test_observe_takes_nan_and_infinities_as_client_python_does(special: float) -> None:
    fast_registry, reference_registry = CollectorRegistry(), CollectorRegistry()
    fast = Histogram("h", "h", buckets=(1.0,), registry=fast_registry)
    reference = Histogram("h", "h", buckets=(1.0,), registry=reference_registry)
    for value in (0.5, special, 2.0):
        metrics.observe(fast, value)
        reference.observe(value)
    got, want = _samples(fast, fast_registry), _samples(reference, reference_registry)
    assert got.keys() == want.keys()
    assert all(got[k] == v or (math.isnan(got[k]) and math.isnan(v)) for k, v in want.items())


def test_observe_in_multiprocess_mode_reads_as_client_pythons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production mode: the mmap files, merged by MultiProcessCollector, read the same."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
    scratch = CollectorRegistry()  # the metrics themselves are read back from the files
    fast = Histogram("fast", "h", ["l"], buckets=metrics.LATENCY_BUCKETS, registry=scratch)
    reference = Histogram("ref", "h", ["l"], buckets=metrics.LATENCY_BUCKETS, registry=scratch)
    for value in [*_EDGES, *np.random.default_rng(4).uniform(0, 12, size=200).tolist()]:
        metrics.observe(fast.labels("x"), value)
        reference.labels("x").observe(value)
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged, str(tmp_path))  # type: ignore[no-untyped-call]
    by_source: dict[str, dict[tuple, float]] = {"fast": {}, "ref": {}}
    for family in merged.collect():
        for s in family.samples:
            source = "fast" if s.name.startswith("fast") else "ref"
            key = (s.name.removeprefix(source), tuple(sorted(s.labels.items())))
            by_source[source][key] = s.value
    assert by_source["fast"] == by_source["ref"]
    # the bounds, +Inf, _count and _sum
    assert len(by_source["fast"]) == len(metrics.LATENCY_BUCKETS) + 3


def _value(text: str, name: str, missing: float | None = None, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    if missing is not None:
        return missing
    raise AssertionError(f"{name} {labels} not exposed")


def test_requests_are_observed_by_route_template_method_and_status(client: FlaskClient) -> None:
    before = client.get("/metrics").get_data(as_text=True)
    labels = {"endpoint": "/predict", "method": "POST", "status": "200"}
    count = "neuron_http_request_duration_seconds_count"
    # Earlier tests in this process may have left /predict samples of other statuses only.
    start = _value(before, count, 0.0, **labels)
    rows_before = _value(before, "neuron_predictions_total")
    for _ in range(3):
        client.post("/predict", json={"inputs": [[1, 0, 0], [0, 1, 1]]})
    client.get("/no/such/thing")
    text = client.get("/metrics").get_data(as_text=True)
    assert _value(text, count, **labels) == start + 3
    assert _value(text, "neuron_predictions_total") == rows_before + 6
    assert _value(text, count, endpoint="unmatched", method="GET", status="404") >= 1
    assert _value(text, "neuron_model_version") == 1
    assert _value(text, "neuron_model_inputs") == 3
    assert 0 < _value(text, "neuron_model_training_loss") < 1e-3


def test_evaluation_feeds_the_observed_error(client: FlaskClient) -> None:
    client.post("/evaluate", json={"inputs": [[1, 0, 0], [0, 0, 1]], "targets": [0, 1]})
    text = client.get("/metrics").get_data(as_text=True)
    assert _value(text, "neuron_evaluation_loss") > 0.9
    assert _value(text, "neuron_evaluation_accuracy") == 0.0
