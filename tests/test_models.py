"""Retrains with an intercept, an L2 penalty and a hidden layer, through the HTTP API.

The answers are checked against the stored document, recomputed here with numpy from its
figures alone (tanh, the weights, the bias), on every inference path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient

from service.app import create_app
from service.settings import Settings

from .conftest import AUTH, TOKEN

CSV = {**AUTH, "Content-Type": "text/csv"}
V2 = "/v2/models/neuron/infer"


def xor(rows: int = 200, seed: int = 0) -> dict[str, Any]:
    """Two raw features on different scales whose class is the XOR of their signs."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (rows, 2)) * [100, 0.01] + [50, 0]
    labels = ((x[:, 0] > 50) ^ (x[:, 1] > 0)).astype(int)
    return {"inputs": x.tolist(), "targets": labels.tolist()}


def retrain(client: FlaskClient, **body: Any) -> Any:
    return client.post("/admin/retrain", json=body, headers=AUTH)


def stored(model_dir: Path, version: int) -> dict[str, Any]:
    return dict(json.loads((model_dir / f"model-{version:08d}.json").read_text()))


def by_hand(document: dict[str, Any], rows: np.ndarray) -> np.ndarray:
    """The probabilities a stored document's figures imply, computed without the service."""
    x = rows
    if document["scaling"] is not None:
        x = (x - document["scaling"]["mean"]) / np.array(document["scaling"]["scale"])
    if document.get("hidden") is not None:
        hidden = document["hidden"]
        x = np.tanh(x @ np.array(hidden["weights"]) + hidden["biases"])
    z = x @ np.array(document["weights"]) + (document.get("bias") or 0.0)
    return 1 / (1 + np.exp(-z))


def predictions(client: FlaskClient, rows: np.ndarray) -> dict[str, list[float]]:
    """The same rows through /predict, V2 JSON and V2 binary data."""
    predict = client.post("/predict", json={"inputs": rows.tolist()}).get_json()["predictions"]
    tensor = {"name": "input0", "shape": list(rows.shape), "datatype": "FP64"}
    as_json = client.post(V2, json={"inputs": [{**tensor, "data": rows.ravel().tolist()}]})
    header = json.dumps(
        {"inputs": [{**tensor, "parameters": {"binary_data_size": rows.nbytes}}]}
    ).encode()
    as_binary = client.post(
        V2,
        data=header + rows.astype("<f8").tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    return {
        "predict": predict,
        "v2 json": as_json.get_json()["outputs"][0]["data"],
        "v2 binary": as_binary.get_json()["outputs"][0]["data"],
    }


def test_a_hidden_layer_learns_xor_and_every_path_serves_the_stored_model(
    client: FlaskClient, model_dir: Path
) -> None:
    data = xor()
    plain = retrain(client, **data, standardize=True, force=True).get_json()
    answer = retrain(client, **data, standardize=True, hidden={"units": 32})
    assert answer.status_code == 200, answer.get_json()
    result = answer.get_json()
    assert result["validation"]["accuracy"] >= 0.9 > plain["validation"]["accuracy"]
    document = stored(model_dir, result["model_version"])
    assert document["hidden"]["units"] == 32 and len(document["hidden"]["weights"]) == 2
    assert document["training"]["refit"] is True and document["training"]["l2"] == 0.3
    model = client.get("/model").get_json()
    assert model["bias"] == document["bias"] is not None
    assert model["hidden"] == {"units": 32, "activation": "tanh", "seed": 1}
    assert len(model["weights"]) == 32
    rows = np.array(data["inputs"][:50])
    expected = by_hand(document, rows)
    for path, got in predictions(client, rows).items():
        assert got == pytest.approx(expected, rel=1e-12), path
    evaluated = client.post(
        "/evaluate", json={"inputs": rows.tolist(), "targets": data["targets"][:50]}
    )
    assert evaluated.get_json()["loss"] == pytest.approx(
        np.mean((np.array(data["targets"][:50]) - expected) ** 2), rel=1e-12
    )


def test_v2_metadata_shows_the_bias_and_the_hidden_layer(client: FlaskClient) -> None:
    assert "parameters" not in client.get("/v2/models/neuron").get_json()  # the article's
    retrain(client, **xor(), standardize=True, hidden={"units": 8, "seed": 3})
    metadata = client.get("/v2/models/neuron").get_json()
    bias = client.get("/model").get_json()["bias"]
    assert metadata["parameters"] == {"bias": bias, "hidden_units": 8, "hidden_activation": "tanh"}
    assert metadata["inputs"][0]["shape"] == [-1, 2]  # the raw features, not the hidden units
    assert "parameters" not in client.get("/v2/models/neuron/versions/1").get_json()


def test_csv_takes_the_hidden_layer_as_query_parameters(client: FlaskClient) -> None:
    data = xor()
    body = "a,b,y\n" + "".join(
        f"{a!r},{b!r},{y}\n" for (a, b), y in zip(data["inputs"], data["targets"], strict=True)
    )
    answer = client.post(
        "/admin/retrain?standardize=true&hidden_units=16&hidden_seed=9&intercept=false",
        data=body.encode(),
        headers=CSV,
    )
    assert answer.status_code == 200, answer.get_json()
    model = client.get("/model").get_json()
    assert model["hidden"] == {"units": 16, "activation": "tanh", "seed": 9}
    assert model["bias"] is None and model["feature_names"] == ["a", "b"]


def test_rollback_and_if_better_carry_the_bias_and_the_hidden_layer(
    client: FlaskClient, model_dir: Path
) -> None:
    data = xor()
    plain = retrain(client, **data, standardize=True, force=True).get_json()
    better = retrain(client, **data, standardize=True, hidden={"units": 32}, promote="if_better")
    assert better.get_json()["promoted"] is True, better.get_json()
    assert better.get_json()["champion"]["version"] == plain["model_version"]
    hidden_version = better.get_json()["model_version"]
    rows = np.array(data["inputs"][:20])
    before = predictions(client, rows)["predict"]
    retrain(client)  # the classic set: another model serves
    back = client.post("/admin/rollback", json={"version": hidden_version}, headers=AUTH)
    assert back.status_code == 200
    assert back.get_json()["hidden"] == {"units": 32, "activation": "tanh", "seed": 1}
    document, copied = (
        stored(model_dir, back.get_json()["version"]),
        stored(model_dir, hidden_version),
    )
    for field in ("weights", "bias", "hidden", "scaling"):
        assert document[field] == copied[field]
    assert predictions(client, rows)["predict"] == before


def test_the_learning_rate_defaults_to_four_over_the_rows_it_trained_on(
    client: FlaskClient, model_dir: Path
) -> None:
    data = xor(rows=100)
    refitted = retrain(client, **data, standardize=True).get_json()  # 25 held out, then all 100
    assert stored(model_dir, refitted["model_version"])["training"]["learning_rate"] == 4 / 100
    validated = retrain(client, **data, standardize=True, refit=False).get_json()
    training = stored(model_dir, validated["model_version"])["training"]
    assert training["learning_rate"] == 4 / 75 and training["rows"] == 75
    assert training["refit"] is False
    classic = retrain(client, intercept=False, l2=0).get_json()
    assert stored(model_dir, classic["model_version"])["training"]["learning_rate"] == 1.0
    assert client.post("/predict", json={"inputs": [[1, 0, 0]]}).get_json()["predictions"][
        0
    ] == pytest.approx(0.99993704, abs=1e-6)


@pytest.mark.parametrize(
    ("hidden", "loc"),
    [
        ({"units": 0}, ["hidden", "units"]),
        ({"units": "8"}, ["hidden", "units"]),
        ({"units": 8.5}, ["hidden", "units"]),
        ({"units": True}, ["hidden", "units"]),
        ({}, ["hidden", "units"]),
        ({"units": 8, "activation": "relu"}, ["hidden", "activation"]),
        ({"units": 8, "seed": -1}, ["hidden", "seed"]),
        ({"units": 8, "depth": 2}, ["hidden", "depth"]),
        (64, ["hidden"]),
        ([64], ["hidden"]),
    ],
)
def test_bad_hidden_values_get_the_usual_validation_error(
    client: FlaskClient, hidden: Any, loc: list[str]
) -> None:
    answer = retrain(client, **xor(), hidden=hidden)
    assert answer.status_code == 422
    error = answer.get_json()["error"]
    assert error["code"] == "validation_error"
    assert loc in [detail["loc"] for detail in error["details"]]


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("hidden_units=abc", "hidden_units"),
        ("hidden_units=0", "hidden_units"),
        ("hidden_activation=relu&hidden_units=4", "hidden_activation"),
        ("hidden_depth=2&hidden_units=4", "hidden_depth"),
        ("hidden_seed=4", "hidden_units"),
        ("l2=-1", "l2"),
        ("intercept=maybe", "intercept"),
    ],
)
def test_bad_hidden_query_parameters_name_the_parameter(
    client: FlaskClient, query: str, name: str
) -> None:
    answer = client.post(f"/admin/retrain?{query}", data=b"a,y\n1,0\n2,1\n", headers=CSV)
    assert answer.status_code == 422
    details = answer.get_json()["error"]["details"]
    assert ["query", name] in [detail["loc"] for detail in details]


@pytest.mark.parametrize(
    ("changes", "body", "needle"),
    [
        ({"max_hidden_units": 16}, {"hidden": {"units": 17}}, "at most 16 hidden units"),
        ({"max_hidden_weights": 30}, {"hidden": {"units": 16}}, "16 x 2 is 32"),
        # 200 rows x (64 units + the bias) x 10,000 iterations is 130,000,000
        ({"max_training_work": 129_999_999}, {"hidden": {"units": 64}}, "trained weights"),
        ({"max_training_work": 200 * 3 * 10_000 - 1}, {}, "trained weights"),
    ],
)
def test_the_limits_count_the_hidden_layer_and_the_bias(
    model_dir: Path, changes: dict[str, int], body: dict[str, Any], needle: str
) -> None:
    client = create_app(Settings(model_dir=model_dir, admin_token=TOKEN, **changes)).test_client()
    answer = retrain(client, **xor(), **body)
    assert answer.status_code == 422, answer.get_json()
    assert needle in json.dumps(answer.get_json())
    assert client.get("/model").get_json()["version"] == 1


def test_within_the_limits_the_same_sizes_train(model_dir: Path) -> None:
    settings = Settings(model_dir=model_dir, admin_token=TOKEN, max_hidden_units=16,
                        max_hidden_weights=32, max_training_work=200 * 17 * 10_000)  # fmt: skip
    client = create_app(settings).test_client()
    answer = retrain(client, **xor(), standardize=True, hidden={"units": 16})
    assert answer.status_code == 200, answer.get_json()


@pytest.mark.parametrize(
    ("body", "field"),
    [({"l2": -0.1}, "l2"), ({"l2": "0.1"}, "l2"),
     ({"intercept": "yes"}, "intercept"), ({"refit": 1}, "refit"), ({"learning_rate": None, "l2": None}, "l2")],
)  # fmt: skip
def test_bad_penalty_intercept_and_refit_values_are_refused(
    client: FlaskClient, body: dict[str, Any], field: str
) -> None:
    answer = retrain(client, **xor(), **body)
    assert answer.status_code == 422, answer.get_json()
    assert [field] in [detail["loc"] for detail in answer.get_json()["error"]["details"]]


def test_a_model_no_better_than_a_constant_gets_the_likely_fix(client: FlaskClient) -> None:
    few = retrain(
        client, inputs=[[1, 0, 0, 0, 1], [0, 1, 0, 0, 1], [1, 1, 0, 0, 0]], targets=[1, 0, 1]
    )
    assert few.status_code == 422
    assert (
        'With 3 rows the l2 penalty (0.3) may outweigh the data: try "l2": 0.'
        in few.get_json()["error"]["message"]
    )
    assert (
        retrain(
            client,
            inputs=[[1, 0, 0, 0, 1], [0, 1, 0, 0, 1], [1, 1, 0, 0, 0]],
            targets=[1, 0, 1],
            l2=0,
        ).status_code
        == 200
    )
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    raw = retrain(client, inputs=x.tolist(), targets=y.tolist())  # 0.001 to 4,000, unscaled
    assert raw.status_code == 422
    message = raw.get_json()["error"]["message"]
    assert (
        "not above the majority-class baseline" in message and 'send "standardize": true' in message
    )
