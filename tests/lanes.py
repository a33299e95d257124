"""What the lanes' tests compare: an answer but its request id, access lines, metric counts."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.metrics_text import sample


class Spy:
    """A lane's wrapped app, counting the requests the lane passes on."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app, self.calls = app, 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        self.calls += 1
        return self.app(environ, start_response)


def answer(
    client: FlaskClient, path: str, body: bytes, headers: dict[str, str], **kw: Any
) -> tuple[Any, ...]:
    """Status, headers but the request id, body of a POST; Content-Length sent as HTTP clients
    send it (werkzeug's test client sends none for an empty body)."""
    environ = {"CONTENT_LENGTH": str(len(body)), **kw.pop("environ_overrides", {})}
    response = client.post(path, data=body, headers=headers, environ_overrides=environ, **kw)
    kept = [(k, v) for k, v in response.headers.items() if k != "X-Request-ID"]
    return response.status, kept, response.get_data()


def count(client: FlaskClient, endpoint: str, status: int) -> float:
    """The request-duration histogram's count of POSTs under these labels, read from /metrics."""
    key = (
        f'neuron_http_request_duration_seconds_count{{endpoint="{endpoint}",'
        f'method="POST",status="{status}"}}'
    )
    return sample(client.get("/metrics").get_data(as_text=True), key, default=0.0)


def access(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The fields of the access lines logged, but those of /metrics scrapes."""
    fields = ("method", "path", "endpoint", "status")
    return [
        {k: getattr(r, k) for k in fields}
        for r in caplog.records
        if r.name == "neuron.access" and r.endpoint != "/metrics"
    ]


def same_either_way(
    client: FlaskClient,
    lane: Any,
    spy: Spy,
    caplog: pytest.LogCaptureFixture,
    request: tuple[str, bytes, dict[str, str], int],
    endpoint: str,
) -> int:
    """Send ``request`` (path, body, headers, expected status) with ``lane`` on, then off.

    Both answers must have that status, the same headers (but the request id) and body, the
    same access line with ``endpoint``, and be counted under ``endpoint`` in the request metrics.
    Returns how many times the lane passed the first request on to ``spy`` (0: it served it).
    """
    path, body, headers, status = request
    counts = [count(client, endpoint, status)]
    with caplog.at_level(logging.INFO, logger="neuron.access"):
        spy.calls = 0
        on = answer(client, path, body, headers)
        passed_on = spy.calls
        counts.append(count(client, endpoint, status))
        lane.enabled = False
        off = answer(client, path, body, headers)
        counts.append(count(client, endpoint, status))
    assert int(on[0][:3]) == status, on
    assert on == off
    first, second = access(caplog)
    assert first == second
    assert first["endpoint"] == endpoint
    assert counts == [counts[0], counts[0] + 1, counts[0] + 2]
    return passed_on
