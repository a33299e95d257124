"""The binary lane answers exactly as the Flask view would, and takes only what it should.

Every request of the binary table (tests/binary_cases.py) and a few more goes to one app
twice, with the lane on and off; status, headers (but the request id), body, access-log
fields and metrics labels must be the same.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.app import create_app
from service.oip import BinaryLane
from service.settings import Settings
from tests.binary_cases import CASES, HEADER, INFER, VALID, binary, rows, tensor
from tests.lanes import Spy
from tests.metrics_text import sample

# The cases the lane leaves to Flask: headers it does not take as they are written, a body
# over the limit, no header length.
DECLINED = {
    "binary_data_size, no header length",
    "binary_data_size, no header length, no content type",
    "text/plain",
    "body of MAX_BODY+1 bytes",
}
TEN_K = np.random.default_rng(5).random((10_000, 3))
EXTRA: list[tuple[str, tuple[bytes, dict[str, str]], int]] = [
    ("10,000 rows", binary({"inputs": [tensor([10_000, 3], 240_000)]}, TEN_K.tobytes()), 200),
    (
        "binary out FP32",
        binary(
            {**VALID, "outputs": [{"name": "output0", "parameters": {"datatype": "FP32", "binary_data": True}}]},
            rows(0, 1, 1),
        ),
        200,
    ),
    ("JSON out, with an id", binary({**VALID, "id": "abc"}, rows(1, 1, 1)), 200),
    ("no Content-Type, as tritonclient sends it", (binary(VALID, rows(1, 0, 0))[0], {HEADER: str(len(binary(VALID, b"")[0]))}), 200),
    ("application/json", (binary(VALID, rows(1, 0, 0))[0], {HEADER: str(len(binary(VALID, b"")[0])), "Content-Type": "application/json"}), 200),
    ("unknown output", binary({**VALID, "outputs": [{"name": "x"}]}, rows(1, 0, 0)), 400),
]  # fmt: skip


@pytest.fixture
def lane_app(settings: Settings) -> tuple[Flask, BinaryLane, Spy]:
    app = create_app(settings)
    lane = app.extensions["neuron_binary_lane"]
    spy = Spy(lane.app)
    lane.app = spy
    return app, lane, spy


def _answer(client: FlaskClient, body: bytes, headers: dict[str, str]) -> tuple[Any, ...]:
    response = client.post(INFER, data=body, headers=headers)
    kept = [(k, v) for k, v in response.headers.items() if k != "X-Request-ID"]
    return response.status, kept, response.get_data()


@pytest.mark.parametrize(
    ("body", "headers", "status", "taken"),
    [pytest.param(*c[1], c[2], c[0] not in DECLINED, id=c[0]) for c in CASES]
    + [pytest.param(*c[1], c[2], True, id=c[0]) for c in EXTRA],
)
def test_the_lane_answers_as_the_view_does(
    lane_app: tuple[Flask, BinaryLane, Spy],
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    headers: dict[str, str],
    status: int,
    taken: bool,
) -> None:
    app, lane, spy = lane_app
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger="neuron.access"):
        on = _answer(client, body, headers)
        assert spy.calls == (0 if taken else 1), "the lane took what it should leave, or not"
        lane.enabled = False
        off = _answer(client, body, headers)
    assert int(on[0][:3]) == status
    assert on == off
    first, second = (_access(r) for r in caplog.records if r.name == "neuron.access")
    assert first == second
    assert first["endpoint"] == "/v2/models/<model_name>/infer"


def _access(record: logging.LogRecord) -> dict[str, Any]:
    return {k: getattr(record, k) for k in ("method", "path", "endpoint", "status")}


def test_requests_the_lane_serves_are_measured_under_the_views_label(
    lane_app: tuple[Flask, BinaryLane, Spy],
) -> None:
    app, _lane, spy = lane_app
    client = app.test_client()
    count = (
        'neuron_http_request_duration_seconds_count{endpoint="/v2/models/<model_name>/infer",'
        'method="POST",status="200"}'
    )
    before = client.get("/metrics").get_data(as_text=True)
    calls = spy.calls
    assert client.post(INFER, data=EXTRA[0][1][0], headers=EXTRA[0][1][1]).status_code == 200
    assert spy.calls == calls
    after = client.get("/metrics").get_data(as_text=True)
    assert sample(after, count, default=0.0) == sample(before, count, default=0.0) + 1
    predictions = "neuron_predictions_total"
    assert sample(after, predictions) == sample(before, predictions, default=0.0) + 10_000


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"method": "PUT"}, "another method"),
        ({"path": "/v2/models/neuron/versions/1/infer"}, "a version's URL"),
        ({"path": "/v2/models/other/infer"}, "another model"),
        ({"path": INFER + "/"}, "a trailing slash"),
        ({"content_type": "application/octet-stream; charset=x"}, "a parameter"),
        ({"content_type": "Application/Octet-Stream"}, "another spelling"),
    ],
)
def test_other_shapes_of_request_go_to_flask(
    lane_app: tuple[Flask, BinaryLane, Spy], change: dict[str, str], what: str
) -> None:
    app, _lane, spy = lane_app
    body, headers = binary(VALID, rows(1, 0, 0))
    kwargs: dict[str, Any] = {"method": "POST", "path": INFER, "data": body, "headers": headers}
    if "content_type" in change:
        kwargs["headers"] = {**headers, "Content-Type": change.pop("content_type")}
    kwargs.update(change)
    app.test_client().open(kwargs.pop("path"), **kwargs)
    assert spy.calls == 1, what


def test_an_unexpected_failure_is_the_views_500(
    lane_app: tuple[Flask, BinaryLane, Spy],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, lane, spy = lane_app

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(app.extensions["neuron"], "infer", explode)
    client = app.test_client()
    body, headers = binary(VALID, rows(1, 0, 0))
    on = _answer(client, body, headers)
    lane.enabled = False
    off = _answer(client, body, headers)
    assert spy.calls == 1
    assert on == off
    assert on[0] == "500 INTERNAL SERVER ERROR"
    assert b"boom" not in on[2]
    logged = [r for r in caplog.records if r.getMessage().startswith("unhandled error on")]
    assert [r.getMessage() for r in logged] == [f"unhandled error on POST {INFER}"] * 2
    assert all(r.exc_info for r in logged)


def test_without_a_model_the_lane_answers_the_views_503(tmp_path: Any) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    app = create_app(Settings(model_dir=blocker))
    lane = app.extensions["neuron_binary_lane"]
    client = app.test_client()
    body, headers = binary(VALID, rows(1, 0, 0))
    on = _answer(client, body, headers)
    lane.enabled = False
    assert on == _answer(client, body, headers)
    assert on[0].startswith("503 ")


# -- infer.py: a header seen before is not read again ------------------------------------------


def test_a_known_header_is_validated_once_and_a_bad_one_every_time() -> None:
    from service.errors import ValidationFailed
    from service.oip.infer import _known_header, binary_request

    body, headers = binary({**VALID, "id": "memo-test"}, rows(1, 0, 0))
    first, _ = binary_request(body, headers[HEADER], 10)
    second, _ = binary_request(body, headers[HEADER], 10)
    assert first is second
    bad, bad_headers = binary({**VALID, "id": 42}, rows(1, 0, 0))  # an id is a string
    kept = _known_header.cache_info().currsize
    for _ in range(2):
        with pytest.raises(ValidationFailed, match="the request is invalid"):
            binary_request(bad, bad_headers[HEADER], 10)
    assert _known_header.cache_info().currsize == kept
    long, long_headers = binary({**VALID, "id": "x" * 2000}, rows(1, 0, 0))
    one, _ = binary_request(long, long_headers[HEADER], 10)
    other, _ = binary_request(long, long_headers[HEADER], 10)
    assert one == other and one is not other
