"""The predict lane answers exactly as the Flask view would, and takes only what it should.

Every /predict request of the hostile table (tests/reliability/test_hostile_input.py) and a
few more goes to one app twice, with the lane on and off; status, headers (but the request
id), body, access-log fields and metrics labels must be the same.
"""

from __future__ import annotations

import gzip
import logging
from typing import Any

import numpy as np
import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.app import create_app
from service.http.encoding import REFUSED_ENDPOINT
from service.http.lane import PredictLane
from service.settings import Settings
from tests.lanes import Spy, access, answer, same_either_way
from tests.metrics_text import sample
from tests.reliability.test_hostile_input import CASES, GZIP, JSON

PREDICT = "/predict"
# Refused by BodyEncoding, around the lane: neither the lane nor Flask sees them.
UNDECODABLE = {
    "gzip: 4 MiB inflating to 4 GiB",
    "gzip: truncated",
    "gzip: plain bytes",
    "deflate: gzip bytes",
    "br: not taken",
}
# Left to Flask: a Content-Type other than application/json as it is written, a body over the limit.
DECLINED = {"no content type", "text/plain", "form content type", "body of MAX_BODY+1 bytes"}
TEN_K = np.random.default_rng(7).random((10_000, 3))
BIG = orjson.dumps({"inputs": TEN_K}, option=orjson.OPT_SERIALIZE_NUMPY)


def _inputs(rows: bytes) -> bytes:
    return b'{"inputs": ' + rows + b"}"


EXTRA: list[tuple[str, bytes, dict[str, str], int]] = [
    ("one row", _inputs(b"[[1, 0, 0]]"), JSON, 200),
    ("one row, no spaces", b'{"inputs":[[1,0,0]]}', JSON, 200),
    ("10,000 random rows", BIG, JSON, 200),
    ("10,000 rows, gzip asked for the answer", BIG, {**JSON, "Accept-Encoding": "gzip"}, 200),
    ("10,000 rows, gzip body", gzip.compress(BIG), GZIP, 200),
    ("10,000 rows, one a string", BIG.replace(b"[", b'["0.5",', 2).replace(b'["0.5",', b"[", 1), JSON, 422),
    ("10,000 rows, one NaN", BIG[:-2] + b",[NaN,0,0]]}", JSON, 400),
    ("10,000 rows, one too wide", BIG[:-2] + b",[1,0,0,0]]}", JSON, 422),
    ("a row too wide", _inputs(b"[[1, 0, 0, 0]]"), JSON, 422),
    ("the largest doubles, a row too short", _inputs(b"[[1.7976931348623157e308, -1.7976931348623157e308]]"), JSON, 422),
    ("big numbers", _inputs(b"[[1e300, -1e300, 0]]"), JSON, 200),
    ("subnormal", _inputs(b"[[5e-324, 0, 0]]"), JSON, 200),
    ("1e309", _inputs(b"[[1e309, 0, 0]]"), JSON, 400),
    ("a key spelled with an escape", b'{"in\\u0070uts": [[1, 0, 0]]}', JSON, 200),
    ("targets too", b'{"inputs": [[1, 0, 0]], "targets": [1]}', JSON, 422),
    ("a byte-order mark", b"\xef\xbb\xbf" + _inputs(b"[[1, 0, 0]]"), JSON, 400),
    ("whitespace only", b" \n", JSON, 400),
    ("duplicate key, the last valid", b'{"inputs": [[1]], "inputs": [[1, 0, 0]]}', JSON, 400),
    ("an X-Request-ID", _inputs(b"[[1, 0, 0]]"), {**JSON, "X-Request-ID": "abc-1"}, 200),
    ("an error, gzip asked for", _inputs(b"[[1, 0]]"), {**JSON, "Accept-Encoding": "gzip"}, 422),
]  # fmt: skip


@pytest.fixture
def lane_app(settings: Settings) -> tuple[Flask, PredictLane, Spy]:
    app = create_app(settings)
    lane = app.extensions["neuron_predict_lane"]
    spy = Spy(lane.app)
    lane.app = spy
    return app, lane, spy


def _answer(client: FlaskClient, body: bytes, headers: dict[str, str], **kw: Any) -> Any:
    return answer(client, kw.pop("path", PREDICT), body, headers, **kw)


def _param(name: str, body: bytes, headers: dict[str, str], status: int) -> Any:
    endpoint = REFUSED_ENDPOINT if name in UNDECODABLE else PREDICT
    return pytest.param(body, headers, status, name in DECLINED, endpoint, id=name)


@pytest.mark.parametrize(
    ("body", "headers", "status", "declined", "endpoint"),
    [_param(c[0], c[2] or b"", c[3], c[4]) for c in CASES if c[1] == PREDICT]
    + [_param(*c) for c in EXTRA],
)
def test_the_lane_answers_as_the_view_does(
    lane_app: tuple[Flask, PredictLane, Spy],
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    headers: dict[str, str],
    status: int,
    declined: bool,
    endpoint: str,
) -> None:
    app, lane, spy = lane_app
    request = (PREDICT, body, headers, status)
    passed_on = same_either_way(app.test_client(), lane, spy, caplog, request, endpoint)
    assert passed_on == declined, "the lane took what it should leave, or not"


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"method": "PUT"}, "another method"),
        ({"method": "GET", "data": b""}, "GET"),
        ({"path": PREDICT + "/"}, "a trailing slash"),
        ({"path": "/evaluate"}, "another endpoint"),
        ({"content_type": "application/json; charset=utf-8"}, "a parameter"),
        ({"content_type": "Application/JSON"}, "another spelling"),
        ({"content_type": "application/json "}, "a space"),
        ({"environ_overrides": {"HTTP_TRANSFER_ENCODING": "chunked"}}, "chunked"),
        ({"environ_overrides": {"CONTENT_LENGTH": "+23"}}, "a signed length"),
        ({"environ_overrides": {"CONTENT_LENGTH": ""}}, "an empty length"),
    ],
)
def test_other_shapes_of_request_go_to_flask(
    lane_app: tuple[Flask, PredictLane, Spy], kwargs: dict[str, Any], what: str
) -> None:
    app, lane, spy = lane_app
    client = app.test_client()
    request: dict[str, Any] = {"method": "POST", "data": _inputs(b"[[1, 0, 0]]")}
    request["content_type"] = "application/json"
    request.update(kwargs)
    path = request.pop("path", PREDICT)
    on = client.open(path, **request)
    assert spy.calls == 1, what
    lane.enabled = False
    off = client.open(path, **request)
    assert (on.status, on.get_data()) == (off.status, off.get_data())


@pytest.mark.parametrize(
    ("environ", "status"),
    [
        ({"CONTENT_LENGTH": "40"}, 400),  # werkzeug: the client left before its body ended
        ({"CONTENT_LENGTH": "40", "wsgi.input_terminated": True}, 200),  # the server framed it
    ],
    ids=["short body", "short body, input terminated"],
)
def test_a_body_shorter_than_its_length_is_read_as_werkzeug_reads_it(
    lane_app: tuple[Flask, PredictLane, Spy], environ: dict[str, Any], status: int
) -> None:
    app, lane, spy = lane_app
    client = app.test_client()
    body = _inputs(b"[[1, 0, 0]]")
    on = _answer(client, body, JSON, environ_overrides=environ)
    assert spy.calls == 0
    lane.enabled = False
    assert on == _answer(client, body, JSON, environ_overrides=environ)
    assert int(on[0][:3]) == status


def test_a_query_string_is_ignored_alike(lane_app: tuple[Flask, PredictLane, Spy]) -> None:
    app, lane, spy = lane_app
    client = app.test_client()
    body = _inputs(b"[[1, 0, 0]]")
    on = _answer(client, body, JSON, path=PREDICT + "?debug=1")
    assert spy.calls == 0
    lane.enabled = False
    assert on == _answer(client, body, JSON, path=PREDICT + "?debug=1")


def test_an_unexpected_failure_is_the_views_500(
    lane_app: tuple[Flask, PredictLane, Spy],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, lane, spy = lane_app

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(app.extensions["neuron"], "infer", explode)
    client = app.test_client()
    body = _inputs(b"[[1, 0, 0]]")
    with caplog.at_level(logging.INFO, logger="neuron.access"):
        on = _answer(client, body, JSON)
        lane.enabled = False
        off = _answer(client, body, JSON)
    assert spy.calls == 1
    assert on == off
    assert on[0] == "500 INTERNAL SERVER ERROR"
    assert b"boom" not in on[2]
    logged = [r for r in caplog.records if r.getMessage().startswith("unhandled error on")]
    assert [r.getMessage() for r in logged] == [f"unhandled error on POST {PREDICT}"] * 2
    assert all(r.exc_info for r in logged)
    assert [a["endpoint"] for a in access(caplog)] == [PREDICT, PREDICT]


def test_without_a_model_the_lane_answers_the_views_503(tmp_path: Any) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    app = create_app(Settings(model_dir=blocker))
    lane = app.extensions["neuron_predict_lane"]
    client = app.test_client()
    body = _inputs(b"[[1, 0, 0]]")
    on = _answer(client, body, JSON)
    lane.enabled = False
    assert on == _answer(client, body, JSON)
    assert on[0].startswith("503 ")


def test_predictions_are_counted_once_whichever_serves(
    lane_app: tuple[Flask, PredictLane, Spy],
) -> None:
    app, lane, _spy = lane_app
    client = app.test_client()
    before = sample(client.get("/metrics").get_data(as_text=True), "neuron_predictions_total", 0.0)
    assert client.post(PREDICT, data=BIG, headers=JSON).status_code == 200
    lane.enabled = False
    assert client.post(PREDICT, data=BIG, headers=JSON).status_code == 200
    after = sample(client.get("/metrics").get_data(as_text=True), "neuron_predictions_total")
    assert after == before + 20_000


def test_a_body_still_encoded_is_left_to_flask(lane_app: tuple[Flask, PredictLane, Spy]) -> None:
    """BodyEncoding decodes before the lane; a body it passed on still encoded is not taken."""
    _app, lane, _spy = lane_app
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": PREDICT,
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": "23",
    }
    assert lane._takes(environ)
    assert not lane._takes({**environ, "HTTP_CONTENT_ENCODING": "gzip"})
    assert not lane._takes(
        {**environ, "CONTENT_LENGTH": str(lane.server.settings.max_body_bytes + 1)}
    )
