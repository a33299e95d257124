"""tests.metrics_text: the one reader of /metrics text the tests share."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from .metrics_text import sample


def test_reads_plain_labelled_and_bucket_samples() -> None:
    registry = CollectorRegistry()
    Counter("jobs_total", "jobs", registry=registry).inc(3)
    hist = Histogram("size_bytes", "size", ["kind"], buckets=[1, 10], registry=registry)
    hist.labels("a").observe(5)
    hist.labels("b").observe(50)
    text = generate_latest(registry).decode()
    assert sample(text, "jobs_total") == 3
    assert sample(text, 'size_bytes_bucket{kind="a",le="10.0"}') == 1
    assert sample(text, 'size_bytes_bucket{le="+Inf",kind="b"}') == 1  # label order is free
    assert sample(text, 'size_bytes_count{kind="b"}') == 1
    assert sample(text, 'size_bytes_count{kind="c"}', default=0.0) == 0.0
    with pytest.raises(AssertionError, match="appears 0 times"):
        sample(text, "missing_total")
