"""Retrain through Flask's test client: standardization, held-out validation, the promotion gate."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient

from service.app import create_app
from service.model.neuron import sigmoid
from service.settings import Settings

from .conftest import AUTH, TOKEN


def separable(rows: int = 80, seed: int = 4, flip: bool = False) -> dict[str, Any]:
    """Two features on very different scales; the class is a linear function of them."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(rows, 2)) * [2000.0, 0.003] + [5000.0, 0.01]
    targets = ((raw[:, 0] - 5000) / 2000 + (raw[:, 1] - 0.01) / 0.003 > 0) != flip
    return {"inputs": raw.tolist(), "targets": targets.astype(int).tolist()}


def retrain(client: FlaskClient, **body: Any) -> Any:
    return client.post("/admin/retrain", json=body, headers=AUTH)


def by_hand(model: dict[str, Any], rows: list[list[float]]) -> np.ndarray:
    """The probabilities GET /model's figures imply, computed here without the service."""
    x = np.array(rows)
    if model["scaling"] is not None:
        x = (x - np.array(model["scaling"]["mean"])) / np.array(model["scaling"]["scale"])
    z = x @ np.array(model["weights"]).reshape(-1, 1)
    return sigmoid(z + (model["bias"] or 0.0))[:, 0]


def test_the_default_model_has_no_scaling_no_split_and_is_above_its_baseline(
    client: FlaskClient,
) -> None:
    model = client.get("/model").get_json()
    assert model["scaling"] is None and model["feature_names"] is None
    assert model["training"]["validation"] is None
    assert model["training"]["accuracy"] == 1.0
    assert model["training"]["baseline_accuracy"] == 0.5
    answer = retrain(client).get_json()
    assert answer["validation"] is None and answer["promoted"] is True
    assert answer["reason"] == "promoted: accuracy 1 on 4 training rows"


def test_standardize_is_stored_and_applied_alike_by_every_inference_path(
    client: FlaskClient,
) -> None:
    data = separable()
    answer = retrain(client, **data, standardize=True, feature_names=["size", "ratio"])
    assert answer.status_code == 200, answer.get_json()
    result = answer.get_json()
    assert result["standardized"] is True
    model = client.get("/model").get_json()
    assert model["feature_names"] == ["size", "ratio"]
    assert model["training"]["validation"] == result["validation"]
    # the stored statistics are the training rows' own (population std), by numpy here
    inputs = np.array(data["inputs"])
    # scored on 20 held-out rows, then refitted on all 80 (the default, refit=true)
    assert model["training"]["rows"] == 80 and result["validation"]["rows"] == 20
    assert model["training"]["refit"] is True and model["bias"] is not None
    assert 4000 < model["scaling"]["mean"][0] < 6000 and 1000 < model["scaling"]["scale"][0] < 3000
    rows, targets = data["inputs"], np.array(data["targets"])
    expected = by_hand(model, rows)
    predicted = client.post("/predict", json={"inputs": rows}).get_json()["predictions"]
    v2 = client.post(
        "/v2/models/neuron/infer",
        json={"inputs": [{"name": "input0", "shape": [80, 2], "datatype": "FP64", "data": rows}]},
    ).get_json()["outputs"][0]["data"]
    evaluated = client.post("/evaluate", json={"inputs": rows, "targets": data["targets"]})
    assert predicted == v2 == pytest.approx(expected, rel=1e-12)
    assert evaluated.get_json()["loss"] == pytest.approx(
        np.mean((targets - expected) ** 2), rel=1e-12
    )
    # the raw rows are scaled by the model: right on nearly all of them, whereas the same
    # weights on unscaled rows are right only by chance
    assert evaluated.get_json()["accuracy"] >= 0.9
    unscaled = sigmoid(inputs @ np.array(model["weights"]).reshape(-1, 1))[:, 0]
    assert np.mean((unscaled >= 0.5) == targets) < 0.8


def test_saturation_on_wide_features_names_standardize_as_the_fix(client: FlaskClient) -> None:
    error = retrain(client, **separable()).get_json()["error"]
    assert error["code"] == "training_rejected"
    assert '"standardize": true' in error["message"]
    assert client.get("/model").get_json()["version"] == 1


def test_saturation_on_narrow_features_does_not_suggest_standardize(client: FlaskClient) -> None:
    inputs = [[0, 0, 1], [1, 1, 1], [1, 0, 1], [0, 1, 1]] * 25
    error = retrain(client, inputs=inputs, targets=[0, 1, 1, 0] * 25, learning_rate=1000).get_json()
    assert "smaller learning_rate" in error["error"]["message"]
    assert "standardize" not in error["error"]["message"]


def test_a_model_no_better_than_the_majority_class_is_refused_with_its_numbers(
    client: FlaskClient,
) -> None:
    # A constant feature: every row gets the same answer, at best the majority class's.
    body = {"inputs": [[1.0]] * 60, "targets": [1] * 40 + [0] * 20}
    refused = retrain(client, **body)
    assert refused.status_code == 422
    message = refused.get_json()["error"]["message"]
    assert refused.get_json()["error"]["code"] == "training_rejected"
    assert "on 15 held-out rows is not above the majority-class baseline 0.6667" in message
    assert client.get("/model").get_json()["version"] == 1
    forced = retrain(client, **body, force=True).get_json()
    assert forced["promoted"] is True and forced["model_version"] == 2
    assert any("baseline" in warning for warning in forced["warnings"])
    assert forced["validation"]["baseline_accuracy"] == pytest.approx(10 / 15)


def test_without_a_split_the_gate_judges_the_training_rows(client: FlaskClient) -> None:
    refused = retrain(client, inputs=[[1.0]] * 6, targets=[1, 1, 1, 1, 0, 0])
    assert (
        "on 6 training rows is not above the majority-class baseline 0.6667"
        in (refused.get_json()["error"]["message"])
    )


def test_validation_fraction_zero_or_too_small(client: FlaskClient) -> None:
    answer = retrain(client, **separable(), standardize=True, validation_fraction=0).get_json()
    assert answer["validation"] is None and answer["promoted"]
    model = client.get("/model").get_json()
    assert model["training"]["rows"] == 80 and model["training"]["validation_fraction"] == 0
    tiny = retrain(
        client, inputs=[[0, 1], [1, 0], [1, 1]], targets=[0, 1, 1], validation_fraction=0.1
    )
    assert tiny.status_code == 422
    assert tiny.get_json()["error"]["details"][0]["loc"] == ["validation_fraction"]


@pytest.mark.parametrize(
    "body",
    [
        {"validation_fraction": 0.6},
        {"validation_fraction": -0.1},
        {"promote": "sometimes"},
        {"standardize": "yes"},
        {"feature_names": ["a", "b"]},  # the classic rows have 3 features
        {"feature_names": ["a", "a", "b"]},
        {"feature_names": ["a", "", "b"]},
    ],
)
def test_bad_training_settings_are_refused(client: FlaskClient, body: dict[str, Any]) -> None:
    response = retrain(client, **body)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "validation_error"


def test_if_better_keeps_the_serving_model_unless_the_new_one_beats_it(
    client: FlaskClient,
) -> None:
    # refit=false: the served models are the validated ones, so an equal one ties exactly (a
    # refitted champion has seen the held-out rows of the same data, and would win the tie).
    good, flipped = {**separable(), "refit": False}, {**separable(flip=True), "refit": False}
    declined = 'neuron_retrains_total{outcome="declined"}'
    before = count(client, declined)
    worse = retrain(client, **flipped, standardize=True).get_json()
    assert worse["model_version"] == 2
    better = retrain(client, **good, standardize=True, promote="if_better").get_json()
    assert better["promoted"] is True and better["model_version"] == 3
    assert better["champion"]["version"] == 2 and better["champion"]["rows"] == 20
    assert better["champion"]["accuracy"] < better["validation"]["accuracy"]
    assert better["reason"].startswith("promoted: accuracy")
    assert "against serving version 2" in better["reason"]
    same = retrain(client, **good, standardize=True, promote="if_better")
    assert same.status_code == 200
    kept = same.get_json()
    assert kept["promoted"] is False and kept["model_version"] == 3
    assert kept["reason"].startswith("not promoted: accuracy")
    assert kept["champion"]["accuracy"] == kept["validation"]["accuracy"]
    model = client.get("/model").get_json()
    assert model["version"] == 3 and model["kept_versions"] == [3, 2, 1]
    assert count(client, declined) == before + 1


def test_if_better_promotes_a_model_of_other_features_and_says_it_was_not_compared(
    client: FlaskClient,
) -> None:
    answer = retrain(client, **separable(), standardize=True, promote="if_better").get_json()
    assert answer["promoted"] is True and answer["champion"] is None
    assert "not compared with serving version 1, which takes 3 features, not 2" in answer["reason"]


def test_rollback_carries_scaling_names_and_validation(client: FlaskClient) -> None:
    retrain(client, **separable(), standardize=True, feature_names=["size", "ratio"])
    scaled = client.get("/model").get_json()
    retrain(client)
    back = client.post("/admin/rollback", json={"version": 2}, headers=AUTH).get_json()
    assert back["version"] == 4
    for field in ("weights", "scaling", "feature_names"):
        assert back[field] == scaled[field]
    assert back["training"]["validation"] == scaled["training"]["validation"]
    rows = separable()["inputs"][:3]
    predicted = client.post("/predict", json={"inputs": rows}).get_json()
    assert predicted["model_version"] == 4
    assert predicted["predictions"] == pytest.approx(by_hand(scaled, rows), rel=1e-12)


def count(client: FlaskClient, series: str) -> float:
    """A series' value on /metrics (the registry is this process's, shared by the tests)."""
    for line in client.get("/metrics").get_data(as_text=True).splitlines():
        if line.startswith(f"{series} "):
            return float(line.split()[1])
    raise AssertionError(f"{series} is not on /metrics")


def test_validation_gauges_follow_the_serving_model(client: FlaskClient) -> None:
    def gauge(name: str) -> float:
        return count(client, name)

    result = retrain(client, **separable(), standardize=True).get_json()
    assert gauge("neuron_model_validation_accuracy") == result["validation"]["accuracy"]
    assert gauge("neuron_model_validation_loss") == result["validation"]["loss"]
    assert (
        gauge("neuron_model_validation_baseline_accuracy")
        == result["validation"]["baseline_accuracy"]
    )
    retrain(client)
    assert math.isnan(gauge("neuron_model_validation_accuracy"))


# -- CSV upload ------------------------------------------------------------------------------

CSV = {**AUTH, "Content-Type": "text/csv"}


def as_csv(data: dict[str, Any], names: tuple[str, str] = ("size", "ratio")) -> bytes:
    lines = [f"{names[0]},{names[1]},label"]
    lines += [f"{a!r},{b!r},{t}" for (a, b), t in zip(data["inputs"], data["targets"], strict=True)]
    return ("\n".join(lines) + "\n").encode()


def test_csv_trains_the_same_model_as_the_same_rows_in_json(client: FlaskClient) -> None:
    data = separable()
    from_json = retrain(client, **data, standardize=True, learning_rate=0.5, seed=9)
    json_model = client.get("/model").get_json()
    from_csv = client.post(
        "/admin/retrain?standardize=true&learning_rate=0.5&seed=9", data=as_csv(data), headers=CSV
    )
    assert from_csv.status_code == 200, from_csv.get_json()
    csv_model = client.get("/model").get_json()
    assert csv_model["version"] == json_model["version"] + 1
    assert csv_model["weights"] == json_model["weights"]
    assert csv_model["scaling"] == json_model["scaling"]
    assert csv_model["training"]["data_sha256"] == json_model["training"]["data_sha256"]
    assert csv_model["feature_names"] == ["size", "ratio"]
    assert from_csv.get_json()["validation"] == from_json.get_json()["validation"]


def test_csv_target_column_by_name(client: FlaskClient) -> None:
    body = b"label,x\n" + b"".join(b"%d,%d\n" % (i % 2, 2 * (i % 2) - 1) for i in range(10))
    # l2=0: ten rows are too few for the default penalty to leave the answer near 1
    answer = client.post("/admin/retrain?target=label&l2=0", data=body, headers=CSV)
    assert answer.status_code == 200, answer.get_json()
    assert client.get("/model").get_json()["feature_names"] == ["x"]
    assert client.post("/predict", json={"inputs": [[1], [-1]]}).get_json()["predictions"][0] > 0.9


@pytest.mark.parametrize(
    ("query", "body", "headers", "status", "code"),
    [
        ("", b"a,t\n1,x\n", CSV, 422, "validation_error"),
        ("", b"a,t\n1,0\n1\n", CSV, 400, "malformed_csv"),
        ("", b"", CSV, 400, "malformed_csv"),
        ("?target=nope", b"a,t\n1,0\n", CSV, 422, "validation_error"),
        ("?standardize=perhaps", b"a,t\n1,0\n", CSV, 422, "validation_error"),
        ("?learning_rate=nan", b"a,t\n1,0\n", CSV, 422, "validation_error"),
        ("?validation_fraction=0.9", b"a,t\n1,0\n", CSV, 422, "validation_error"),
        ("?unknown=1", b"a,t\n1,0\n", CSV, 422, "validation_error"),
        ("?targets=1", b"a,t\n1,0\n", CSV, 422, "validation_error"),
        ("?seed=1&seed=2", b"a,t\n1,0\n", CSV, 422, "validation_error"),
        (
            "",
            b"a,t\n1,0\n",
            {**AUTH, "Content-Type": "text/csv; charset=latin-1"},
            415,
            "unsupported_media_type",
        ),
        ("?seed=2", b"{}", {**AUTH, "Content-Type": "application/json"}, 422, "validation_error"),
        ("", b"a,t\n" + b"1,0\n" * 5, CSV, 413, "payload_too_large"),
    ],
)
def test_bad_csv_requests(
    model_dir: Path, query: str, body: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    small = create_app(Settings(model_dir=model_dir, admin_token=TOKEN, max_train_rows=4))
    response = small.test_client().post(f"/admin/retrain{query}", data=body, headers=headers)
    assert (response.status_code, response.get_json()["error"]["code"]) == (status, code)
    assert small.test_client().get("/model").get_json()["version"] == 1
