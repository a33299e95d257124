"""Load during retrains: no failed request, no torn model, no wrong version label."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import requests

from service.model.neuron import Neuron
from service.store import ModelStore, decode
from tests.integration.server import TOKEN, Gunicorn

from .conftest import Record

AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Two sets over the same rows whose models disagree on every row: one follows the first input,
# the other its negation. Each trains (deterministically) in a few milliseconds.
ROWS = [[0, 0, 1], [1, 1, 1], [1, 0, 1], [0, 1, 1]]
SETS = (
    {"inputs": ROWS, "targets": [0, 1, 1, 0], "iterations": 1500},
    {"inputs": ROWS, "targets": [1, 0, 0, 1], "iterations": 1500},
)
PROBE = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0], [0.5, -2, 3]], dtype=float)
MIN_SECONDS, MAX_SECONDS = 20.0, 45.0
MIN_RETRAINS, MAX_RETRAINS = 50, 2000
CLIENTS = 4
TOLERANCE = 1e-9


def _stored_models(model_dir: Path) -> dict[int, Neuron]:
    store = ModelStore(model_dir)
    return {v: store.read(v).neuron for v in store.versions()}


def torn_answers(
    answers: list[tuple[int, list[float]]], neurons: dict[int, Neuron]
) -> tuple[int, int, float]:
    """(answers off by > TOLERANCE, answers naming no stored version, worst error): each
    answer to PROBE is recomputed by the stored model of the version it names."""
    mismatched = 0
    unknown = 0
    worst = 0.0
    for version, predictions in answers:
        if version not in neurons:
            unknown += 1
            continue
        error = float(np.max(np.abs(np.array(predictions) - neurons[version](PROBE))))
        worst = max(worst, error)
        mismatched += error > TOLERANCE
    return mismatched, unknown, worst


def test_predictions_during_retrains_match_the_version_they_name(
    tmp_path: Path, record: Record
) -> None:
    server = Gunicorn(tmp_path / "s", env={"NEURON_KEEP_VERSIONS": "1000"}).start()
    stop = threading.Event()
    answers: list[tuple[int, list[float]]] = []
    failures: list[str] = []
    retrained: list[int] = []

    def predict(keep_alive: bool) -> None:
        session = requests.Session() if keep_alive else requests
        body = {"inputs": PROBE.tolist()}
        deadline = time.monotonic() + MAX_SECONDS + 10
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                response = session.post(f"{server.url}/predict", json=body, timeout=10)
            except requests.RequestException as exc:
                failures.append(f"predict: {exc!r}")
                continue
            if response.status_code != 200:
                failures.append(f"predict {response.status_code}: {response.text[:200]}")
                continue
            answer = response.json()
            answers.append((answer["model_version"], answer["predictions"]))

    def retrain() -> None:
        started = time.monotonic()
        for count in range(MAX_RETRAINS):
            elapsed = time.monotonic() - started
            if elapsed > MAX_SECONDS or (count >= MIN_RETRAINS and elapsed >= MIN_SECONDS):
                break
            response = server.post("/admin/retrain", SETS[count % 2], headers=AUTH)
            if response.status_code != 200:
                failures.append(f"retrain {response.status_code}: {response.text[:200]}")
                continue
            retrained.append(response.json()["model_version"])

    try:
        with ThreadPoolExecutor(CLIENTS + 1) as pool:
            clients = [pool.submit(predict, i % 2 == 0) for i in range(CLIENTS)]
            started = time.monotonic()
            pool.submit(retrain).result()
            seconds = time.monotonic() - started
            stop.set()
            for client in clients:
                client.result()
        models = _stored_models(server.model_dir)
    finally:
        stop.set()
        server.stop()

    mismatched, unknown, worst = torn_answers(answers, models)
    served = Counter(version for version, _ in answers)
    record(
        load=f"{CLIENTS} client threads, {len(answers)} /predict in {seconds:.1f} s "
        f"during {len(retrained)} back-to-back retrains",
        faults=f"model swapped every ~{1000 * seconds / max(len(retrained), 1):.0f} ms between two opposite models",
        failures=f"{len(failures)} failed requests, {mismatched} answers off by > 1e-9 "
        f"(worst {worst:.1e}), {unknown} unknown versions",
        predictions=len(answers),
        retrains=len(retrained),
        seconds=round(seconds, 1),
        versions_served=len(served),
    )
    assert failures == []
    assert len(retrained) >= MIN_RETRAINS and seconds >= MIN_SECONDS
    assert retrained == list(range(2, 2 + len(retrained)))
    assert unknown == 0 and mismatched == 0
    # The load really straddled the swaps: answers came from many versions, of both kinds.
    assert len(served) >= len(retrained) // 2
    assert not np.allclose(models[2].weights, models[3].weights)


def test_concurrent_retrains_get_consecutive_unique_versions(
    server: Gunicorn, record: Record
) -> None:
    threads, each = 8, 5
    body = {**SETS[0], "iterations": 300}

    def retrain(_: int) -> list[Any]:
        out = []
        for _ in range(each):
            response = server.post("/admin/retrain", body, headers=AUTH, timeout=30)
            out.append(response.json().get("model_version", response.status_code))
        return out

    with ThreadPoolExecutor(threads) as pool:
        versions = [v for batch in pool.map(retrain, range(threads)) for v in batch]
    total = threads * each
    files = sorted(server.model_dir.glob("model-*"))
    stored = [decode(path.read_bytes()).version for path in files]
    infos = {server.get("/model").json()["version"] for _ in range(20)}
    record(
        load=f"{threads} threads x {each} retrains at once, 2 workers",
        faults="writers racing for the lock from both workers",
        failures=f"{sum(not isinstance(v, int) or v < 2 for v in versions)} failed, "
        f"{total - len(set(versions))} duplicate versions",
        retrains=total,
    )
    assert sorted(versions) == list(range(2, 2 + total))
    assert [p.name for p in files] == [f"model-{v:08d}.json" for v in range(total - 3, total + 2)]
    assert stored == list(range(total - 3, total + 2))  # keep=5 newest, all valid
    assert (server.model_dir / "CURRENT").read_text().strip() == str(total + 1)
    assert infos == {total + 1}
    assert not list(server.model_dir.glob(".tmp-*"))
