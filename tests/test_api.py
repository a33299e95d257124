"""The HTTP API through Flask's test client: statuses, envelopes, admin, retrain, rollback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient

from service.app import create_app
from service.settings import Settings

from .conftest import AUTH, TOKEN

JSON = {"Content-Type": "application/json"}


def iris() -> tuple[list[list[float]], list[float]]:
    data = np.loadtxt(
        Path(__file__).parent / "data" / "iris_setosa_versicolor.csv", delimiter=",", skiprows=1
    )
    return data[:, :4].tolist(), data[:, 4].tolist()


def test_predict_answers_with_the_serving_version(client: FlaskClient) -> None:
    response = client.post("/predict", json={"inputs": [[1, 0, 0], [0, 0, 1]]})
    assert response.status_code == 200
    body = response.get_json()
    assert body["model_version"] == 1
    assert body["predictions"][0] == pytest.approx(0.99993704, abs=1e-6)
    assert len(body["predictions"]) == 2


@pytest.mark.parametrize(
    ("data", "headers", "status", "code"),
    [
        (b"{", JSON, 400, "malformed_json"),
        (b'{"inputs": [[1, 0, 0]]', JSON, 400, "malformed_json"),
        (b'{"inputs": [[Infinity, 0, 0]]}', JSON, 400, "malformed_json"),
        (b'{"inputs": [[-Infinity, 0, 0]]}', JSON, 400, "malformed_json"),
        (b'{"inputs": [[1e400, 0, 0]]}', JSON, 400, "malformed_json"),
        (b'{"inputs": [[1, 0, 0]]}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        (b'{"inputs": [[1, 0, 0]]}', {}, 415, "unsupported_media_type"),
        (b"[[1, 0, 0]]", JSON, 422, "validation_error"),
        (b'{"inputs": [[1, 0, 0]], "extra": 1}', JSON, 422, "validation_error"),
        (b'{"inputs": [[1, 0, "x"]]}', JSON, 422, "validation_error"),
        (b'{"inputs": [[1, 0, false]]}', JSON, 422, "validation_error"),
        (b'{"inputs": [[1, 0, null]]}', JSON, 422, "validation_error"),
        (b'{"inputs": [[1, 0, 0, 0]]}', JSON, 422, "validation_error"),
        (b'{"inputs": [[1, 0], [1, 0, 0]]}', JSON, 422, "validation_error"),
        (b'{"inputs": []}', JSON, 422, "validation_error"),
        (b"[" * 5000 + b"]" * 5000, JSON, 400, "malformed_json"),
        (b'{"inputs": "\xff"}', JSON, 400, "malformed_json"),
    ],
)
def test_bad_predict_requests(
    client: FlaskClient, data: bytes, headers: dict, status: int, code: str
) -> None:
    response = client.post("/predict", data=data, headers=headers)
    assert response.status_code == status
    error = response.get_json()["error"]
    assert error["code"] == code
    assert error["message"]


def test_a_batch_over_the_limit_is_refused(model_dir: Path) -> None:
    client = create_app(Settings(model_dir=model_dir, max_batch=3)).test_client()
    assert client.post("/predict", json={"inputs": [[1, 0, 0]] * 3}).status_code == 200
    response = client.post("/predict", json={"inputs": [[1, 0, 0]] * 4})
    assert response.status_code == 422
    assert "at most 3 rows" in response.get_json()["error"]["details"][0]["msg"]


def test_a_body_over_the_limit_is_refused_before_reading(model_dir: Path) -> None:
    client = create_app(Settings(model_dir=model_dir, max_body_bytes=1024)).test_client()
    response = client.post("/predict", data=b" " * 1025, headers=JSON)
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


def test_method_not_allowed_says_what_is(client: FlaskClient) -> None:
    response = client.get("/predict")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_evaluate_reports_loss_and_accuracy(client: FlaskClient) -> None:
    inputs = [[1, 0, 0], [0, 0, 1], [1, 1, 1], [0, 1, 1]]
    response = client.post("/evaluate", json={"inputs": inputs, "targets": [1, 0, 0, 0]})
    assert response.status_code == 200
    body = response.get_json()
    assert body["rows"] == 4
    assert body["accuracy"] == 0.75  # [1,1,1] is predicted 1, the label says 0
    predictions = np.array(
        client.post("/predict", json={"inputs": inputs}).get_json()["predictions"]
    )
    assert body["loss"] == pytest.approx(np.mean((np.array([1, 0, 0, 0]) - predictions) ** 2))


def test_model_describes_the_serving_version(client: FlaskClient) -> None:
    body = client.get("/model").get_json()
    assert body["version"] == 1
    assert body["n_inputs"] == 3
    assert body["training"]["source"] == "default"
    assert body["training"]["iterations"] == 10_000
    assert body["kept_versions"] == [1]
    assert "checksum" not in body


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": TOKEN}, 401),
        ({"Authorization": "Bearer "}, 401),
        ({"Authorization": f"Basic {TOKEN}"}, 401),
        ({"Authorization": f"Bearer {TOKEN[:-1]}X"}, 401),
        ({"Authorization": f"Bearer {TOKEN}"}, 200),
        ({"Authorization": f"bearer {TOKEN}"}, 200),
    ],
)
def test_admin_needs_the_bearer_token(client: FlaskClient, headers: dict, status: int) -> None:
    response = client.post("/admin/retrain", headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert TOKEN not in response.get_data(as_text=True)


def test_a_token_in_the_query_string_is_ignored(client: FlaskClient) -> None:
    assert client.post(f"/admin/retrain?token={TOKEN}&access_token={TOKEN}").status_code == 401


def test_admin_is_closed_without_a_token(model_dir: Path) -> None:
    client = create_app(Settings(model_dir=model_dir)).test_client()
    response = client.post("/admin/retrain", headers=AUTH)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "admin_disabled"


def test_retrain_on_new_data_promotes_a_new_version(client: FlaskClient) -> None:
    body = {
        "inputs": [[1, 0, 0, 0, 1], [0, 1, 0, 0, 1], [1, 1, 0, 0, 0]],
        "targets": [1, 0, 1],
        "seed": 3,
        "l2": 0,  # three rows: the default penalty would outweigh them (docs/training.md)
    }
    response = client.post("/admin/retrain", json=body, headers=AUTH)
    assert response.status_code == 200
    result = response.get_json()
    assert result["model_version"] == 2
    assert result["warnings"] == []
    assert result["loss"] < result["initial_loss"]
    model = client.get("/model").get_json()
    assert model["n_inputs"] == 5
    assert model["training"]["seed"] == 3
    assert (
        client.post("/predict", json={"inputs": [[1, 0, 0, 0, 0]]}).get_json()["model_version"] == 2
    )
    assert client.post("/predict", json={"inputs": [[1, 0, 0]]}).status_code == 422


def test_a_saturating_retrain_is_explained_and_not_promoted(client: FlaskClient) -> None:
    inputs, targets = iris()
    # Raw features of up to 7.9 with the article's settings (the defaults do not saturate
    # here): the outputs stick at 0 or 1.
    article = {"learning_rate": 1.0, "intercept": False, "l2": 0}
    saturating = {"inputs": inputs, "targets": targets, **article}
    response = client.post("/admin/retrain", json=saturating, headers=AUTH)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "training_rejected"
    assert "saturated" in error["message"] and "smaller learning_rate" in error["message"]
    assert client.get("/model").get_json()["version"] == 1
    forced = client.post(
        "/admin/retrain", json={**saturating, "force": True}, headers=AUTH
    ).get_json()
    assert forced["model_version"] == 2 and forced["warnings"]
    good = client.post(
        "/admin/retrain",
        json={**saturating, "learning_rate": 0.01},
        headers=AUTH,
    ).get_json()
    assert good["model_version"] == 3 and good["warnings"] == []


@pytest.mark.parametrize(
    ("settings_change", "body", "status"),
    [
        ({"max_train_rows": 3}, {"inputs": [[1]] * 4, "targets": [1] * 4}, 413),
        ({"max_iterations": 100}, {"iterations": 101}, 422),
        ({"max_inputs": 2}, {"inputs": [[1, 0, 1]], "targets": [1]}, 422),
        ({"max_training_work": 1000}, {"iterations": 1000}, 422),
        (
            {"training_budget_seconds": 0.01},
            {"inputs": [[0.5] * 50] * 2000, "targets": [1] * 2000, "iterations": 10**6},
            422,
        ),
    ],
)
def test_training_limits(model_dir: Path, settings_change: dict, body: dict, status: int) -> None:
    settings = Settings(
        model_dir=model_dir, admin_token=TOKEN, max_body_bytes=10**7, **settings_change
    )
    client = create_app(settings).test_client()
    response = client.post("/admin/retrain", json=body, headers=AUTH)
    assert response.status_code == status, response.get_data(as_text=True)
    assert client.get("/model").get_json()["version"] == 1


def test_rollback_serves_a_kept_version_again(client: FlaskClient) -> None:
    client.post(
        "/admin/retrain", json={"inputs": [[1, 0], [0, 1]], "targets": [0, 1]}, headers=AUTH
    )
    assert client.get("/model").get_json()["n_inputs"] == 2
    response = client.post("/admin/rollback", json={"version": 1}, headers=AUTH)
    assert response.status_code == 200
    model = response.get_json()
    assert model["version"] == 3
    assert model["training"]["source"] == "rollback"
    assert model["training"]["rolled_back_to"] == 1
    answer = client.post("/predict", json={"inputs": [[1, 0, 0]]}).get_json()
    assert answer == {"predictions": [pytest.approx(0.99993704, abs=1e-6)], "model_version": 3}
    assert client.post("/admin/rollback", json={"version": 99}, headers=AUTH).status_code == 404


def test_not_ready_until_a_model_loads(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the model directory should be")
    client = create_app(Settings(model_dir=blocked)).test_client()
    assert client.get("/healthz").status_code == 200
    for path in ("/readyz", "/model"):
        response = client.get(path)
        assert response.status_code == 503
        assert response.get_json()["error"]["code"] == "not_ready"
    assert client.post("/predict", json={"inputs": [[1, 0, 0]]}).status_code == 503


def test_request_id_and_security_headers(client: FlaskClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "my-id.1"})
    assert response.headers["X-Request-ID"] == "my-id.1"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    unsafe = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert unsafe.headers["X-Request-ID"] != "bad id\twith spaces"


def test_rollback_to_a_damaged_version_is_not_found_and_quarantines_it(
    client: FlaskClient, model_dir: Path
) -> None:
    client.post(
        "/admin/retrain", json={"inputs": [[1, 0], [0, 1]], "targets": [0, 1]}, headers=AUTH
    )
    damaged = model_dir / "model-00000001.json"
    damaged.write_bytes(damaged.read_bytes().replace(b"9.67", b"9.68"))
    response = client.post("/admin/rollback", json={"version": 1}, headers=AUTH)
    assert response.status_code == 404
    assert "damaged" in response.get_json()["error"]["message"]
    assert not damaged.exists() and (model_dir / "model-00000001.json.corrupt").exists()
    assert client.get("/model").get_json()["version"] == 2
