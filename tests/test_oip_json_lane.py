"""The JSON infer lane answers exactly as the Flask view would, and takes only what it should.

Every V2 JSON infer of the hostile table (tests/reliability/test_hostile_input.py's
OIP_CASES) and a few more goes to one app twice, with the lane on and off; status, headers (but
the request id), body, access-log fields and metrics labels must be the same.
"""

from __future__ import annotations

import gzip
import logging
from typing import Any

import numpy as np
import orjson
import pytest
from flask import Flask

from service.app import create_app
from service.http.encoding import REFUSED_ENDPOINT
from service.oip import JsonInferLane
from service.settings import Settings
from tests.lanes import Spy, access, answer, same_either_way
from tests.reliability.test_hostile_input import GZIP, JSON, OIP_CASES

INFER = "/v2/models/neuron/infer"
ENDPOINT = "/v2/models/<model_name>/infer"
TEN_K = np.random.default_rng(11).random(30_000)
TEN_K[5] = 12345.0  # spelled so once in the body: a place for a NaN
TENSOR = {"name": "input0", "shape": [1, 3], "datatype": "FP64"}


def _body(data: Any, shape: list[int] | None = None, datatype: str = "FP64", **more: Any) -> bytes:
    tensor = {**TENSOR, "shape": shape or [1, 3], "datatype": datatype, "data": data}
    return orjson.dumps({"inputs": [tensor], **more}, option=orjson.OPT_SERIALIZE_NUMPY)


ONE = _body([1, 0, 0])
BINARY_OUT = {"outputs": [{"name": "output0", "parameters": {"binary_data": True}}]}
EXTRA: list[tuple[str, bytes, dict[str, str], int]] = [
    ("no Content-Type, as tritonclient sends JSON", ONE, {}, 200),
    ("10,000 rows", _body(TEN_K, [10_000, 3]), JSON, 200),
    ("10,000 rows, answer gzipped", _body(TEN_K, [10_000, 3]), {**JSON, "Accept-Encoding": "gzip"}, 200),
    ("10,000 rows, gzip body", gzip.compress(_body(TEN_K, [10_000, 3])), GZIP, 200),
    ("10,000 rows, one NaN", _body(TEN_K, [10_000, 3]).replace(b"12345.0", b"NaN"), JSON, 400),
    ("FP32", _body([1, 0, 0], datatype="FP32"), JSON, 200),
    ("INT8", _body([1, 0, 0], datatype="INT8"), JSON, 200),
    ("BYTES", _body(["a", "b", "c"], datatype="BYTES"), JSON, 400),
    ("nested data", _body([[1, 0, 0]]), JSON, 200),
    ("binary output asked for", _body([1, 0, 0], **BINARY_OUT), JSON, 200),
    ("an id", _body([1, 0, 0], id="req-7"), JSON, 200),
    ("model_version of the serving one", _body([1, 0, 0], model_version="1"), JSON, 200),
    ("a row too wide", _body([1, 0, 0, 0], [1, 4]), JSON, 400),
    ("two rows too many", _body([1, 0, 0] * 10_001, [10_001, 3]), JSON, 400),
    ("empty body", b"", JSON, 400),
    ("gzip: truncated", gzip.compress(ONE)[:-12], GZIP, 400),
]  # fmt: skip
DECLINED_TYPES = [
    ("application/octet-stream, no header length", "application/octet-stream", 400),
    ("text/plain", "text/plain", 415),
    ("a parameter", "application/json; charset=utf-8", 200),
    ("another spelling", "Application/JSON", 200),
]


@pytest.fixture
def lane_app(settings: Settings) -> tuple[Flask, JsonInferLane, Spy]:
    app = create_app(settings)
    lane = app.extensions["neuron_json_infer_lane"]
    spy = Spy(lane.app)
    lane.app = spy
    return app, lane, spy


@pytest.mark.parametrize(
    ("case", "body", "headers", "status"),
    [pytest.param(c[0], c[1], JSON, c[2], id=c[0]) for c in OIP_CASES]
    + [pytest.param(*c, id=c[0]) for c in EXTRA],
)
def test_the_lane_answers_as_the_view_does(
    lane_app: tuple[Flask, JsonInferLane, Spy],
    caplog: pytest.LogCaptureFixture,
    case: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
) -> None:
    app, lane, spy = lane_app
    endpoint = REFUSED_ENDPOINT if case == "gzip: truncated" else ENDPOINT  # BodyEncoding's 400
    request = (INFER, body, headers, status)
    assert same_either_way(app.test_client(), lane, spy, caplog, request, endpoint) == 0


@pytest.mark.parametrize(
    ("content_type", "status"), [pytest.param(*c[1:], id=c[0]) for c in DECLINED_TYPES]
)
def test_other_content_types_go_to_flask(
    lane_app: tuple[Flask, JsonInferLane, Spy],
    caplog: pytest.LogCaptureFixture,
    content_type: str,
    status: int,
) -> None:
    app, lane, spy = lane_app
    request = (INFER, ONE, {"Content-Type": content_type}, status)
    assert same_either_way(app.test_client(), lane, spy, caplog, request, ENDPOINT) == 1


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"method": "PUT"}, "another method"),
        ({"path": "/v2/models/neuron/versions/1/infer"}, "a version's URL"),
        ({"path": "/v2/models/other/infer"}, "another model"),
        ({"path": INFER + "/"}, "a trailing slash"),
        ({"environ_overrides": {"HTTP_TRANSFER_ENCODING": "chunked"}}, "chunked"),
        ({"environ_overrides": {"CONTENT_LENGTH": "+23"}}, "a signed length"),
    ],
)
def test_other_shapes_of_request_go_to_flask(
    lane_app: tuple[Flask, JsonInferLane, Spy], kwargs: dict[str, Any], what: str
) -> None:
    app, lane, spy = lane_app
    client = app.test_client()
    request: dict[str, Any] = {"method": "POST", "data": ONE, "content_type": "application/json"}
    request.update(kwargs)
    path = request.pop("path", INFER)
    on = client.open(path, **request)
    assert spy.calls == 1, what
    lane.enabled = False
    off = client.open(path, **request)
    assert (on.status, on.get_data()) == (off.status, off.get_data())


def test_a_binary_infer_is_left_to_the_binary_lane_and_flask(
    lane_app: tuple[Flask, JsonInferLane, Spy],
) -> None:
    """With an Inference-Header-Content-Length: the binary lane (outside this one), else Flask."""
    app, _lane, spy = lane_app
    header = orjson.dumps({"inputs": [{**TENSOR, "parameters": {"binary_data_size": 24}}]})
    body = header + np.array([1.0, 0, 0]).tobytes()
    headers = {"Inference-Header-Content-Length": str(len(header))}
    on = answer(app.test_client(), INFER, body, headers)
    assert spy.calls == 0
    app.extensions["neuron_binary_lane"].enabled = False
    assert answer(app.test_client(), INFER, body, headers) == on
    assert spy.calls == 1
    assert on[0] == "200 OK"


@pytest.mark.parametrize(
    ("environ", "status"),
    [
        ({"CONTENT_LENGTH": str(len(ONE) + 9)}, 400),
        ({"CONTENT_LENGTH": str(len(ONE) + 9), "wsgi.input_terminated": True}, 200),
    ],
    ids=["short body", "short body, input terminated"],
)
def test_a_body_shorter_than_its_length_is_read_as_werkzeug_reads_it(
    lane_app: tuple[Flask, JsonInferLane, Spy], environ: dict[str, Any], status: int
) -> None:
    app, lane, spy = lane_app
    client = app.test_client()
    on = answer(client, INFER, ONE, JSON, environ_overrides=environ)
    assert spy.calls == 0
    lane.enabled = False
    assert on == answer(client, INFER, ONE, JSON, environ_overrides=environ)
    assert int(on[0][:3]) == status


def test_an_unexpected_failure_is_the_views_500(
    lane_app: tuple[Flask, JsonInferLane, Spy],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, lane, spy = lane_app

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(app.extensions["neuron"], "infer", explode)
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger="neuron.access"):
        on = answer(client, INFER, ONE, JSON)
        lane.enabled = False
        off = answer(client, INFER, ONE, JSON)
    assert spy.calls == 1
    assert on == off
    assert on[0] == "500 INTERNAL SERVER ERROR"
    assert b"boom" not in on[2]
    logged = [r for r in caplog.records if r.getMessage().startswith("unhandled error on")]
    assert [r.getMessage() for r in logged] == [f"unhandled error on POST {INFER}"] * 2
    assert all(r.exc_info for r in logged)
    assert [a["endpoint"] for a in access(caplog)] == [ENDPOINT, ENDPOINT]


def test_without_a_model_the_lane_answers_the_views_503(tmp_path: Any) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    app = create_app(Settings(model_dir=blocker))
    lane = app.extensions["neuron_json_infer_lane"]
    client = app.test_client()
    on = answer(client, INFER, ONE, JSON)
    lane.enabled = False
    assert on == answer(client, INFER, ONE, JSON)
    assert on[0].startswith("503 ")
