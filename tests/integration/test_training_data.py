"""Training on real data sets that scikit-learn ships, sent raw to a running gunicorn.

The reference is scikit-learn's LogisticRegression on StandardScaler-ed rows of the same split;
the baseline is DummyClassifier(most_frequent). Neither shares code with the service.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris, load_wine
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from service.model.validation import stratified_split

from .server import TOKEN, Gunicorn

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CSV = {**AUTH, "Content-Type": "text/csv"}
TOLERANCE = 0.03  # the issue's: held-out accuracy within 0.03 of scikit-learn's
# The article's update sums over rows, so hundreds of rows want a smaller rate than its 1.0.
RATE = 0.1

Dataset = tuple[np.ndarray, np.ndarray, list[str]]


def breast_cancer() -> Dataset:
    """569 rows, 30 features from 0.001 to 4,000; class 1 = benign (63%)."""
    data = load_breast_cancer()
    return data.data, data.target, [str(n) for n in data.feature_names]


def wine_0_vs_1() -> Dataset:
    data = load_wine()
    keep = data.target < 2
    return data.data[keep], data.target[keep], [str(n) for n in data.feature_names]


def iris_versicolor_vs_virginica() -> Dataset:
    data = load_iris()
    keep = data.target > 0
    return (
        data.data[keep],
        (data.target[keep] == 2).astype(int),
        [str(n) for n in data.feature_names],
    )


DATASETS = [breast_cancer, wine_0_vs_1, iris_versicolor_vs_virginica]


def as_csv(inputs: np.ndarray, targets: np.ndarray, names: list[str]) -> bytes:
    lines = [",".join([*names, "label"])]
    lines += [
        ",".join([*map(repr, row), str(int(t))])
        for row, t in zip(inputs.tolist(), targets.tolist(), strict=True)
    ]
    return ("\n".join(lines) + "\n").encode()


def send(
    server: Gunicorn,
    how: str,
    inputs: np.ndarray,
    targets: np.ndarray,
    names: list[str],
    **settings: Any,
) -> Any:
    """A retrain with raw rows, as JSON or as CSV with the settings in the query."""
    if how == "json":
        body = {"inputs": inputs.tolist(), "targets": targets.tolist(), "feature_names": names}
        return server.post("/admin/retrain", {**body, **settings}, headers=AUTH, timeout=60)
    query = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in settings.items()}
    return server.post(
        "/admin/retrain", data=as_csv(inputs, targets, names), params=query, headers=CSV, timeout=60
    )


def sklearn_accuracy(
    train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]
) -> float:
    scaler = StandardScaler().fit(train[0])
    model = LogisticRegression(max_iter=5000).fit(scaler.transform(train[0]), train[1])
    return float(model.score(scaler.transform(test[0]), test[1]))


@pytest.mark.parametrize("how", ["json", "csv"])
@pytest.mark.parametrize("dataset", DATASETS, ids=lambda d: d.__name__)
def test_standardized_raw_rows_come_within_tolerance_of_scikit_learn(
    server: Gunicorn, dataset: Callable[[], Dataset], how: str
) -> None:
    """scikit-learn splits; the service trains on the raw training rows; /evaluate judges."""
    inputs, targets, names = dataset()
    x_train, x_test, y_train, y_test = train_test_split(
        inputs, targets, test_size=0.25, stratify=targets, random_state=0
    )
    answer = send(
        server,
        how,
        x_train,
        y_train,
        names,
        standardize=True,
        learning_rate=RATE,
        validation_fraction=0,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["promoted"] and answer.json()["validation"] is None
    model = server.get("/model").json()
    assert model["feature_names"] == names and model["scaling"] is not None
    ours = server.post("/evaluate", {"inputs": x_test.tolist(), "targets": y_test.tolist()}).json()
    reference = sklearn_accuracy((x_train, y_train), (x_test, y_test))
    assert ours["model_version"] == model["version"]
    assert ours["accuracy"] >= reference - TOLERANCE, (ours["accuracy"], reference)


@pytest.mark.parametrize("dataset", DATASETS, ids=lambda d: d.__name__)
def test_the_services_own_split_reports_what_scikit_learn_gets_on_it(
    server: Gunicorn, dataset: Callable[[], Dataset]
) -> None:
    inputs, targets, names = dataset()
    seed = 11
    # refit=false: the served model is then the validated one, which /evaluate can check
    answer = send(
        server, "csv", inputs, targets, names, standardize=True, learning_rate=RATE, seed=seed,
        refit=False,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    validation = answer.json()["validation"]
    training, held = stratified_split(targets.reshape(-1, 1).astype(float), 0.25, seed)
    assert validation["rows"] == len(held)
    reference = sklearn_accuracy(
        (inputs[training], targets[training]), (inputs[held], targets[held])
    )
    assert validation["accuracy"] >= reference - TOLERANCE, (validation, reference)
    dummy = DummyClassifier(strategy="most_frequent").fit(inputs[training], targets[training])
    assert validation["baseline_accuracy"] == pytest.approx(
        dummy.score(inputs[held], targets[held])
    )
    assert server.get("/model").json()["training"]["validation"] == validation
    # the held-out figures are the served model's on those rows, as /evaluate measures them
    evaluated = server.post(
        "/evaluate", {"inputs": inputs[held].tolist(), "targets": targets[held].tolist()}
    ).json()
    assert evaluated["accuracy"] == validation["accuracy"]
    assert evaluated["loss"] == pytest.approx(validation["loss"], rel=1e-9)


# Seeds whose random start leaves raw breast-cancer rows saturated (3), trainable but poor
# at small rates (1, 6: held-out accuracy 0.11 and 0.30 at 1e-8), or good (5, 11).
@pytest.mark.parametrize("rate", [1.0, 1e-4, 1e-6, 1e-8, 1e-10])
@pytest.mark.parametrize("seed", [1, 3, 5, 6, 11])
def test_without_standardize_no_model_worse_than_the_majority_is_ever_promoted(
    shared_server: Gunicorn, seed: int, rate: float
) -> None:
    inputs, targets, names = breast_cancer()
    before = shared_server.get("/model").json()["version"]
    answer = send(shared_server, "json", inputs, targets, names, learning_rate=rate, seed=seed)
    training, held = stratified_split(targets.reshape(-1, 1).astype(float), 0.25, seed)
    baseline = DummyClassifier(strategy="most_frequent").fit(inputs[training], targets[training])
    majority = baseline.score(inputs[held], targets[held])
    if answer.status_code == 422:
        error = answer.json()["error"]
        assert error["code"] == "training_rejected"
        assert '"standardize": true' in error["message"] or "baseline" in error["message"]
        assert shared_server.get("/model").json()["version"] == before
        return
    assert answer.status_code == 200, answer.text
    evaluated = shared_server.post(
        "/evaluate", {"inputs": inputs[held].tolist(), "targets": targets[held].tolist()}
    ).json()
    assert evaluated["model_version"] == answer.json()["model_version"]
    assert evaluated["accuracy"] > majority


def test_the_issues_case_is_refused_by_the_gate_with_its_numbers(server: Gunicorn) -> None:
    """Trainable, not saturated, loss improved, yet worse than always answering 'benign'."""
    inputs, targets, names = breast_cancer()
    settings = {"learning_rate": 1e-8, "seed": 1}
    refused = send(server, "csv", inputs, targets, names, **settings)
    assert refused.status_code == 422
    message = refused.json()["error"]["message"]
    assert "saturated" not in message and "did not improve" not in message
    training, held = stratified_split(targets.reshape(-1, 1).astype(float), 0.25, 1)
    majority = DummyClassifier(strategy="most_frequent").fit(inputs[training], targets[training])
    baseline = majority.score(inputs[held], targets[held])
    assert (
        f"on {len(held)} held-out rows is not above the majority-class baseline {baseline:.4g}"
        in message
    )
    forced = send(server, "csv", inputs, targets, names, **settings, force=True).json()
    assert forced["validation"]["accuracy"] < baseline == forced["validation"]["baseline_accuracy"]
    assert f"Accuracy {forced['validation']['accuracy']:.4g} on {len(held)}" in message


def test_every_inference_path_applies_the_stored_scaling_to_raw_rows(server: Gunicorn) -> None:
    inputs, targets, names = breast_cancer()
    assert send(server, "csv", inputs, targets, names, standardize=True, learning_rate=RATE).ok
    model = server.get("/model").json()
    rows = inputs[::7]
    scaled = (rows - np.array(model["scaling"]["mean"])) / np.array(model["scaling"]["scale"])
    by_hand = 1 / (1 + np.exp(-(scaled @ np.array(model["weights"]) + model["bias"])))
    predicted = server.post("/predict", {"inputs": rows.tolist()}).json()["predictions"]
    tensor = {
        "name": "input0",
        "shape": list(rows.shape),
        "datatype": "FP64",
        "data": rows.ravel().tolist(),
    }
    v2 = server.post("/v2/models/neuron/infer", {"inputs": [tensor]}).json()["outputs"][0]["data"]
    v2_version = server.post(
        f"/v2/models/neuron/versions/{model['version']}/infer", {"inputs": [tensor]}
    ).json()["outputs"][0]["data"]
    labels = targets[::7]
    evaluated = server.post(
        "/evaluate", {"inputs": rows.tolist(), "targets": labels.tolist()}
    ).json()
    assert predicted == v2 == v2_version
    assert predicted == pytest.approx(by_hand.tolist(), rel=1e-9)
    assert evaluated["loss"] == pytest.approx(float(np.mean((labels - np.array(predicted)) ** 2)))
    assert evaluated["accuracy"] == np.mean((np.array(predicted) >= 0.5) == labels)


def test_scaling_survives_restart_and_rollback_and_tampering_is_caught(server: Gunicorn) -> None:
    inputs, targets, names = breast_cancer()
    rows = {"inputs": inputs[:20].tolist()}
    scaled_version = send(
        server, "csv", inputs, targets, names, standardize=True, learning_rate=RATE
    ).json()["model_version"]
    before = server.post("/predict", rows).json()
    model = server.get("/model").json()

    server.restart()
    assert server.post("/predict", rows).json() == before
    assert server.get("/model").json()["scaling"] == model["scaling"]

    assert server.post("/admin/retrain", headers=AUTH).ok  # the classic model: 3 inputs
    back = server.post("/admin/rollback", {"version": scaled_version}, headers=AUTH).json()
    assert back["scaling"] == model["scaling"] and back["feature_names"] == names
    after = server.post("/predict", rows).json()
    assert after["model_version"] == back["version"]
    assert after["predictions"] == before["predictions"]

    # One changed digit of a stored mean: the checksum catches it at the next load.
    path = server.model_dir / f"model-{back['version']:08d}.json"
    raw = path.read_text()
    first_mean = json.dumps(model["scaling"]["mean"][0])
    assert first_mean in raw
    path.write_text(raw.replace(first_mean, json.dumps(model["scaling"]["mean"][0] * 1.001), 1))
    server.restart()
    assert (server.model_dir / f"{path.name}.corrupt").exists()
    served = server.get("/model").json()
    assert served["version"] == back["version"] - 1  # the classic retrain, the newest valid one
    assert "neuron_model_load_failures_total 1.0" in server.get("/metrics").text
