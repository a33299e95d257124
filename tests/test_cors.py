"""CORS (NEURON_CORS_ORIGINS): off by default; allowed origins named, others left alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from pydantic import ValidationError

from service.app import create_app
from service.settings import Settings

from .binary_cases import INFER, VALID, binary, rows
from .conftest import AUTH, TOKEN
from .metrics_text import sample

APP = "http://127.0.0.1:5173"
OTHER = "https://evil.example"
JSON = {"Content-Type": "application/json"}
PREDICT = {"inputs": [[1, 0, 0]]}
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}


def _client(tmp_path: Path, **settings: Any) -> FlaskClient:
    app = create_app(Settings(model_dir=tmp_path / "model", admin_token=TOKEN, **settings))
    return app.test_client()


def _cors_headers(response: Any) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def _requests(client: FlaskClient, origin: str) -> list[Any]:
    """A request of each kind a page might make, from ``origin``."""
    body, headers = binary(VALID, rows(1, 0, 0))
    hdr = {"Origin": origin}
    return [
        client.options("/predict", headers={**hdr, **PREFLIGHT}),
        client.post("/predict", json=PREDICT, headers=hdr),
        client.post("/evaluate", json={**PREDICT, "targets": [1]}, headers=hdr),
        client.get("/model", headers=hdr),
        client.options(INFER, headers={**hdr, **PREFLIGHT}),
        client.post(INFER, data=body, headers={**headers, **hdr}),  # the binary lane
        client.post("/admin/retrain", json={}, headers={**AUTH, **hdr}),
        client.get("/docs", headers=hdr),
        client.get("/", headers=hdr),
        client.post("/predict", json={"inputs": [[1, 0]]}, headers=hdr),  # an error
    ]


def test_unset_no_response_carries_a_cors_header(client: FlaskClient) -> None:
    for response in _requests(client, APP):
        assert _cors_headers(response) == {}, response.request.path
        assert "Origin" not in response.headers.get("Vary", "")


def test_an_allowed_origins_preflight_is_answered(tmp_path: Path) -> None:
    client = _client(tmp_path, cors_origins=f"{APP}, http://localhost:8080")
    for path in ("/predict", "/evaluate", "/model", INFER, "/v2/models/neuron/ready"):
        response = client.options(path, headers={"Origin": APP, **PREFLIGHT})
        assert response.status_code == 204, path
        assert response.headers["Access-Control-Allow-Origin"] == APP
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
        allowed = response.headers["Access-Control-Allow-Headers"].lower()
        assert {"content-type", "authorization", "inference-header-content-length"} <= {
            h.strip() for h in allowed.split(",")
        }
        assert response.headers["Vary"] == "Origin"
        assert "Access-Control-Allow-Credentials" not in response.headers
        assert response.get_data() == b""


def test_an_allowed_origin_is_named_on_every_answer_the_lane_and_errors_too(
    tmp_path: Path,
) -> None:
    client = _client(tmp_path, cors_origins=APP)
    preflights, answers = [], []
    for response in _requests(client, APP):
        path = response.request.path
        if path.startswith(("/admin/", "/docs")) or path == "/":
            assert _cors_headers(response) == {}, path  # not covered
            continue
        (preflights if response.request.method == "OPTIONS" else answers).append(response)
        assert response.headers["Access-Control-Allow-Origin"] == APP, path
        assert "Origin" in response.headers["Vary"]
    assert [r.status_code for r in answers] == [200, 200, 200, 200, 422]
    assert all("X-Request-ID" in r.headers["Access-Control-Expose-Headers"] for r in answers)
    assert [r.status_code for r in preflights] == [204, 204]


def test_a_disallowed_origin_gets_no_cors_headers_and_the_same_answer(tmp_path: Path) -> None:
    client = _client(tmp_path, cors_origins=APP)
    plain = client.post("/predict", json=PREDICT)
    refused = client.post("/predict", json=PREDICT, headers={"Origin": OTHER})
    assert _cors_headers(refused) == {}
    assert refused.headers["Vary"] == "Origin"
    assert (refused.status_code, refused.get_data()) == (plain.status_code, plain.get_data())
    # Its preflight is Flask's ordinary OPTIONS answer: the browser then refuses the call.
    preflight = client.options("/predict", headers={"Origin": OTHER, **PREFLIGHT})
    assert _cors_headers(preflight) == {}
    assert preflight.status_code == 200 and "POST" in preflight.headers["Allow"]


def test_any_origin_with_a_star(tmp_path: Path) -> None:
    client = _client(tmp_path, cors_origins="*")
    response = client.post("/predict", json=PREDICT, headers={"Origin": OTHER})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_admin_routes_only_when_asked_for(tmp_path: Path) -> None:
    closed = _client(tmp_path / "a", cors_origins=APP)
    response = closed.options("/admin/retrain", headers={"Origin": APP, **PREFLIGHT})
    assert _cors_headers(response) == {}
    opened = _client(tmp_path / "b", cors_origins=APP, cors_admin=True)
    response = opened.options("/admin/retrain", headers={"Origin": APP, **PREFLIGHT})
    assert response.status_code == 204
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()
    retrain = opened.post("/admin/retrain", json={}, headers={**AUTH, "Origin": APP})
    assert retrain.status_code == 200
    assert retrain.headers["Access-Control-Allow-Origin"] == APP


def test_docs_keep_their_csp_and_the_index_its_vary(tmp_path: Path) -> None:
    plain = _client(tmp_path / "a")
    cors = _client(tmp_path / "b", cors_origins=APP)
    for path in ("/docs", "/"):
        before = plain.get(path, headers={"Origin": APP, "Accept": "text/html"})
        after = cors.get(path, headers={"Origin": APP, "Accept": "text/html"})
        assert after.headers.get("Content-Security-Policy") == before.headers.get(
            "Content-Security-Policy"
        )
        assert after.headers.get("Vary") == before.headers.get("Vary")
        assert _cors_headers(after) == {}


def test_preflights_are_measured_under_one_label(tmp_path: Path) -> None:
    client = _client(tmp_path, cors_origins=APP)
    key = (
        'neuron_http_request_duration_seconds_count{endpoint="CORS preflight",method="OPTIONS",'
        'status="204"}'
    )
    before = sample(client.get("/metrics").get_data(as_text=True), key, default=0)
    for path in ("/predict", "/v2/models/neuron/versions/7/infer"):
        client.options(path, headers={"Origin": APP, **PREFLIGHT})
    assert sample(client.get("/metrics").get_data(as_text=True), key) == before + 2


@pytest.mark.parametrize(
    "origins",
    [
        "https://app.example.com/",
        "https://app.example.com/path",
        "app.example.com",
        "*, https://app.example.com",
        "https://app.example.com,,http://localhost:3000",
        "ftp://files.example.com",
    ],
)
def test_a_malformed_origin_is_refused_at_start_up(origins: str) -> None:
    with pytest.raises(ValidationError, match="cors_origins"):
        Settings(cors_origins=origins)


@pytest.mark.parametrize(
    ("origins", "parsed"),
    [
        (None, ()),
        ("", ()),
        ("*", ("*",)),
        ("http://[::1]:8000, https://a.example", ("http://[::1]:8000", "https://a.example")),
    ],
)
def test_origins_are_read_as_a_list(origins: str | None, parsed: tuple[str, ...]) -> None:
    assert Settings(cors_origins=origins).cors() == parsed
