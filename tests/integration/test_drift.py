"""Input drift through gunicorn with two workers: one window, whichever worker counts or answers."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from .server import TOKEN, Gunicorn

AUTH = {"Authorization": f"Bearer {TOKEN}"}
NAMES = ["age", "income", "ratio"]
CENTRE, SPREAD = np.array([40.0, 3000.0, 0.5]), np.array([10.0, 800.0, 0.1])


def draw(rng: np.random.Generator, rows: int, shift: float = 0.0) -> np.ndarray:
    """Rows like the training rows; `shift` standard deviations added to income."""
    values = rng.normal(size=(rows, 3)) * SPREAD + CENTRE
    values[:, 1] += shift * SPREAD[1]
    return values


@pytest.fixture(scope="module")
def drifting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    gunicorn = Gunicorn(tmp_path_factory.mktemp("drift"), env={"NEURON_DRIFT_MIN_ROWS": "300"})
    try:
        gunicorn.start()
        rows = draw(np.random.default_rng(1), 3_000)
        body = {
            "inputs": rows.tolist(),
            "targets": (rows[:, 0] > 40).astype(int).tolist(),
            "feature_names": NAMES,
            "standardize": True,
        }
        assert gunicorn.post("/admin/retrain", body, headers=AUTH, timeout=60).ok
        yield gunicorn
    finally:
        gunicorn.stop()


def reports(server: Gunicorn, count: int) -> list[dict]:
    return [server.get("/model/drift").json() for _ in range(count)]


def settled(server: Gunicorn, rows: int) -> dict:
    """/model/drift once every worker's counting thread has flushed `rows` rows (within 5 s)."""
    deadline = time.monotonic() + 5
    while (report := server.get("/model/drift").json())["rows"] != rows:
        assert time.monotonic() < deadline, f"{report['rows']} rows counted, not {rows}"
        time.sleep(0.05)
    return report


def answering_pids(server: Gunicorn, path: str) -> set[int]:
    return {line["pid"] for line in server.log_lines() if line.get("path") == path}


def from_both_workers(server: Gunicorn, path: str) -> list[str]:
    """GET path until both workers have answered (at most 200 times): in turn on a kept-alive
    connection, which holds one worker, and on a new one, which the fair accept gives the other."""
    bodies = []
    with requests.Session() as kept:
        for i in range(200):
            answer = kept.get(f"{server.url}{path}", timeout=10) if i % 2 else server.get(path)
            bodies.append(answer.text)
            if len(bodies) >= 6 and len(answering_pids(server, path)) == 2:
                return bodies
    raise AssertionError(f"one worker answered every {path}")


def test_every_worker_counts_into_one_window_and_answers_the_same(drifting: Gunicorn) -> None:
    rng = np.random.default_rng(2)
    # Fresh connections alone may all reach one worker (CI: 80 in a row): the kernel wakes
    # the last one first. A kept-alive connection holds one worker, so the fair accept sends
    # the fresh ones to the other: single rows and batches reach both.
    with requests.Session() as kept:
        for i in range(40):
            single, batch = {"inputs": draw(rng, 1).tolist()}, {"inputs": draw(rng, 9).tolist()}
            kept_body, fresh_body = (single, batch) if i % 2 else (batch, single)
            assert kept.post(f"{drifting.url}/predict", json=kept_body, timeout=10).ok
            assert drifting.post("/predict", fresh_body).ok
    assert len(answering_pids(drifting, "/predict")) == 2, "both workers should have predicted"
    settled(drifting, 400)
    answers = [json.loads(body) for body in from_both_workers(drifting, "/model/drift")]
    assert all(answer == answers[0] for answer in answers), "workers disagree"
    assert answers[0]["rows"] == 400 and answers[0]["drifting"] == 0
    assert all(feature["score"] < 0.25 for feature in answers[0]["features"])
    scores = [drifted_scores(text) for text in from_both_workers(drifting, "/metrics")]
    assert all(s == scores[0] for s in scores)
    assert scores[0] == {f["name"]: f["score"] for f in answers[0]["features"]}


def drifted_scores(metrics: str) -> dict[str, float]:
    prefix = 'neuron_input_drift_score{feature="'
    return {
        line[len(prefix) :].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith(prefix)
    }


def test_a_shifted_feature_drifts_and_a_killed_worker_keeps_its_counts(drifting: Gunicorn) -> None:
    rng = np.random.default_rng(3)
    before = drifting.get("/model/drift").json()["rows"]
    for _ in range(20):
        assert drifting.post("/predict", {"inputs": draw(rng, 25, shift=2.0).tolist()}).ok
    report = settled(drifting, before + 500)
    scores = {f["name"]: f["score"] for f in report["features"]}
    assert scores["income"] > 0.25 > max(scores["age"], scores["ratio"]), scores
    assert [f["name"] for f in report["features"] if f["drifting"]] == ["income"]

    victim = min(drifting.worker_pids())
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while victim in drifting.worker_pids() or len(drifting.worker_pids()) < 2:
        assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
        time.sleep(0.1)
    # The dead worker's file stays until its counts leave the window: nothing it saw is lost.
    assert Path(drifting.metrics_dir, "drift", f"drift-{victim}.bin").exists()
    assert reports(drifting, 4)[-1]["rows"] == report["rows"]


def test_a_real_data_set_sent_raw_and_one_column_in_other_units(tmp_path: Path) -> None:
    """scikit-learn's breast cancer rows, 30 raw features: the held-out half looks like the
    training half; the same half with `mean radius` in millimetres (x 10) drifts on it alone."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    order = np.random.default_rng(0).permutation(len(data.target))
    train, held = order[: len(order) // 2], order[len(order) // 2 :]
    names = [name.replace(" ", "_") for name in data.feature_names]
    gunicorn = Gunicorn(tmp_path / "cancer", env={"NEURON_DRIFT_MIN_ROWS": "200"})
    try:
        gunicorn.start()
        body = {
            "inputs": data.data[train].tolist(),
            "targets": data.target[train].tolist(),
            "feature_names": names,
            "standardize": True,
        }
        assert gunicorn.post("/admin/retrain", body, headers=AUTH, timeout=60).ok
        rows = data.data[held]
        for start in range(0, len(rows), 20):
            assert gunicorn.post("/predict", {"inputs": rows[start : start + 20].tolist()}).ok
        calm = settled(gunicorn, len(held))
        assert calm["rows"] == len(held) and calm["drifting"] == 0, calm
        assert max(f["score"] for f in calm["features"]) < 0.2

        millimetres = rows.copy()
        millimetres[:, 0] *= 10
        for start in range(0, len(rows), 20):
            batch = millimetres[start : start + 20].tolist()
            assert gunicorn.post("/predict", {"inputs": batch}).ok
        shifted = settled(gunicorn, 2 * len(held))
        assert [f["name"] for f in shifted["features"] if f["drifting"]] == ["mean_radius"]
        series = drifted_scores(gunicorn.get("/metrics").text)
        assert len(series) == 10 and max(series, key=series.__getitem__) == "mean_radius"
    finally:
        gunicorn.stop()
