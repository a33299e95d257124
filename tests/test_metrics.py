"""Metric helpers: bulk histogram observation, and what requests leave in the registry."""

from __future__ import annotations

import numpy as np
import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry, Histogram
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
