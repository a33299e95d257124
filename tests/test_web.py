"""service.http.web: JSON in (through jsonbody), JSON out, the error envelope and the request hooks."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import BaseModel, ValidationInfo, field_validator

from service import errors, metrics
from service.app import create_app
from service.http import web
from service.schemas import PredictRequest, RetrainRequest
from service.settings import Settings

from .conftest import AUTH

JSON = "application/json"


def _call(app: Flask, fn: Any, data: bytes, content_type: str | None = JSON) -> Any:
    with app.test_request_context("/x", method="POST", data=data, content_type=content_type):
        return fn()


def test_parse_json_gives_the_model(app: Flask) -> None:
    request = _call(app, lambda: web.parse_json(PredictRequest), b'{"inputs": [[1, 0, 0]]}')
    assert request.inputs.tolist() == [[1.0, 0.0, 0.0]]


@pytest.mark.parametrize(
    ("data", "content_type", "error"),
    [
        (b'{"inputs": [[1, 0, 0]]}', None, errors.UnsupportedMediaType),
        (b'{"inputs": [[1, 0, 0]]}', "text/plain", errors.UnsupportedMediaType),
        (b"", JSON, errors.MalformedRequest),
        (b"{", JSON, errors.MalformedRequest),
        (b'{"inputs": [[1]], "inputs": [[2]]}', JSON, errors.MalformedRequest),
        (b"null", JSON, errors.ValidationFailed),
        (b"[[1, 0, 0]]", JSON, errors.ValidationFailed),
        (b'{"inputs": [[1, true, 0]]}', JSON, errors.ValidationFailed),
        (b'{"inputs": [[1, "1", 0]]}', JSON, errors.ValidationFailed),
    ],
)
def test_parse_json_refusals(
    app: Flask, data: bytes, content_type: str | None, error: type[errors.ServiceError]
) -> None:
    with pytest.raises(error):
        _call(app, lambda: web.parse_json(PredictRequest), data, content_type)


def test_read_json_optional(app: Flask) -> None:
    assert _call(app, lambda: web.read_json(optional=True), b"") is None
    assert _call(app, lambda: web.read_json(optional=True), b'{"a": 1}') == {"a": 1}
    with pytest.raises(errors.ValidationFailed, match="JSON object"):
        _call(app, lambda: web.read_json(optional=True), b"null")
    with pytest.raises(errors.MalformedRequest):
        _call(app, web.read_json, b"")
    assert _call(app, web.read_json, b"null") is None  # not optional: JSON null is a value


def test_read_json_assume_json(app: Flask) -> None:
    assert _call(app, lambda: web.read_json(assume_json=True), b"[1]", None) == [1]
    with pytest.raises(errors.UnsupportedMediaType):
        _call(app, lambda: web.read_json(assume_json=True), b"[1]", "text/plain")


def test_validate_checks_each_value_it_cannot_vouch_for(app: Flask) -> None:
    """validate() has no raw body: the per-value check always runs (numpy reads True as 1.0)."""
    with app.test_request_context("/x"):
        with pytest.raises(errors.ValidationFailed) as caught:
            web.validate(PredictRequest, {"inputs": [[1, True, 0]]})
        assert caught.value.details == [
            {
                "loc": ["inputs"],
                "msg": "every value must be a number (not a boolean, string or null)",
            }
        ]
        with pytest.raises(errors.ValidationFailed, match="JSON object"):
            web.validate(RetrainRequest, [])
        assert web.validate(RetrainRequest, {"seed": 3}).seed == 3


@pytest.mark.parametrize("bad", [b"null", b'"1"', b"true", b"false"])
@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/predict", b'{"inputs": [[1, %s, 0]]}'),
        ("/evaluate", b'{"inputs": [[1, %s, 0]], "targets": [1]}'),
        ("/evaluate", b'{"inputs": [[1, 0, 0]], "targets": [%s]}'),
        ("/admin/retrain", b'{"inputs": [[1, %s, 0]], "targets": [1]}'),
    ],
)
def test_one_rule_one_message(client: FlaskClient, path: str, template: bytes, bad: bytes) -> None:
    """null says what a string or a boolean says, wherever it stands."""
    response = client.post(path, data=template % bad, content_type=JSON, headers=AUTH)
    assert response.status_code == 422
    [detail] = response.get_json()["error"]["details"]
    assert detail["msg"] == "every value must be a number (not a boolean, string or null)"


def test_json_response_serialises_models_and_numpy(app: Flask) -> None:
    with app.test_request_context("/x"):
        response = web.json_response({"a": np.array([0.5, 1.0])}, status=201)
    assert response.status_code == 201
    assert response.content_type == JSON
    assert orjson.loads(response.get_data()) == {"a": [0.5, 1.0]}


def test_unknown_route_and_method_get_the_envelope(client: FlaskClient) -> None:
    response = client.get("/no-such-thing")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    response = client.get("/predict")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_an_unexpected_exception_is_a_500_without_a_traceback(app: Flask) -> None:
    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret detail")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal_error"
    assert "secret detail" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("supplied", "kept"), [("abc-123.x:y", True), ("bad id", False), ("x" * 129, False)]
)
def test_request_id_and_security_headers(client: FlaskClient, supplied: str, kept: bool) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": supplied})
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    request_id = response.headers["X-Request-ID"]
    assert (request_id == supplied) is kept
    if not kept:
        assert len(request_id) == 32 and int(request_id, 16) >= 0


class _Seen(BaseModel):
    """Records the validation context it was given."""

    inputs: Any = None

    @field_validator("inputs")
    @classmethod
    def _keep(cls, value: Any, info: ValidationInfo) -> Any:
        contexts.append(dict(info.context or {}))
        return value


contexts: list[dict[str, Any]] = []


@pytest.mark.parametrize(
    ("data", "numbers_only"),
    [(b'{"inputs": [[1, 0, 0]]}', True), (b'{"inputs": [[1, null, 0]]}', False)],
)
def test_parse_json_tells_the_matrix_check_what_the_body_holds(
    app: Flask, data: bytes, numbers_only: bool
) -> None:
    """The fast path of the matrix check (no per-value type check) rests on this fact."""
    contexts.clear()
    _call(app, lambda: web.parse_json(_Seen, {"max_rows": 5}), data)
    assert contexts == [{"numbers_only": numbers_only, "max_rows": 5}]
    contexts.clear()
    with app.test_request_context("/x"):
        web.validate(_Seen, {"inputs": [[1]]})
    assert contexts == [{"numbers_only": False}]  # no raw body: nothing vouched for


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("POST", "/predict", 200),
        ("POST", "/predict", 415),
        ("GET", "/predict", 405),
        ("GET", "/no/such/thing", 404),
        ("GET", "/metrics", 200),
    ],
)
def test_every_response_has_one_request_id_one_nosniff_and_one_access_line(
    client: FlaskClient, capfd: pytest.CaptureFixture[str], method: str, path: str, status: int
) -> None:
    capfd.readouterr()
    body = b'{"inputs": [[1, 0, 0]]}'
    kind = "text/plain" if status == 415 else JSON
    response = client.open(path, method=method, data=body, content_type=kind)
    assert response.status_code == status
    assert response.headers.getlist("X-Content-Type-Options") == ["nosniff"]
    [request_id] = response.headers.getlist("X-Request-ID")
    access = [
        line
        for line in map(orjson.loads, capfd.readouterr().err.splitlines())
        if line.get("logger") == "neuron.access"
    ]
    [line] = access
    endpoint = "unmatched" if status in (404, 405) else path
    assert {k: line[k] for k in ("request_id", "method", "path", "endpoint", "status")} == {
        "request_id": request_id,
        "method": method,
        "path": path,
        "endpoint": endpoint,
        "status": status,
    }
    assert 0 < float(line["duration_ms"]) < 10_000


def test_the_in_flight_gauge_counts_the_request_being_handled(app: Flask) -> None:
    seen: list[float] = []

    @app.get("/busy")
    def busy() -> dict[str, str]:
        seen.append(metrics.REQUESTS_IN_FLIGHT._value.get())
        return {}

    before = metrics.REQUESTS_IN_FLIGHT._value.get()
    app.test_client().get("/busy")
    assert seen == [before + 1]
    assert metrics.REQUESTS_IN_FLIGHT._value.get() == before


def test_a_request_raising_past_flask_leaves_the_gauge_as_it_was(app: Flask) -> None:
    """An exception escaping the app (Flask handles them all; werkzeug's test client can
    re-raise with PROPAGATE_EXCEPTIONS) must not leave the request counted as in flight."""
    app.config["PROPAGATE_EXCEPTIONS"] = True
    app.error_handler_spec[None][None].clear()  # the catch-all handler would answer 500

    @app.get("/escape")
    def escape() -> None:
        raise RuntimeError("escapes")

    before = metrics.REQUESTS_IN_FLIGHT._value.get()
    with pytest.raises(RuntimeError):
        app.test_client().get("/escape")
    assert metrics.REQUESTS_IN_FLIGHT._value.get() == before


def test_with_metrics_off_the_headers_stay_and_nothing_is_observed(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"metrics_enabled": False}))
    seen: list[float] = []

    @app.get("/busy")
    def busy() -> dict[str, str]:
        seen.append(metrics.REQUESTS_IN_FLIGHT._value.get())
        return {}

    child = metrics.REQUEST_DURATION_SECONDS.labels("/busy", "GET", "200")
    before, count = metrics.REQUESTS_IN_FLIGHT._value.get(), child._sum.get()
    response = app.test_client().get("/busy")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert len(response.headers["X-Request-ID"]) == 32
    assert seen == [before]
    assert child._sum.get() == count
