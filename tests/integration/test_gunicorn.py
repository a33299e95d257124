"""The service under real gunicorn with two workers, over HTTP on 127.0.0.1."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import requests

from service.app import OPERATIONS as DOCUMENTED
from service.app import documented_statuses
from service.model.neuron import Neuron
from tests.metrics_text import sample

from .server import TOKEN, Gunicorn

AUTH = {"Authorization": f"Bearer {TOKEN}"}
REFERENCE = 0.99993704  # the article's published figure for [1, 0, 0]
OPERATIONS = {(op.path, op.method) for op in DOCUMENTED}


def _version_file(server: Gunicorn, version: int) -> Path:
    return server.model_dir / f"model-{version:08d}.json"


def test_first_start_trains_once_and_predicts_the_reference(server: Gunicorn) -> None:
    response = server.post("/predict", {"inputs": [[1, 0, 0], [0, 1, 1]]})
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == 1
    assert body["predictions"][0] == pytest.approx(REFERENCE, abs=1e-6)
    assert body["predictions"][1] < 0.01
    # Two workers started together against an empty directory: exactly one model was trained.
    assert sorted(p.name for p in server.model_dir.glob("model-*.json")) == ["model-00000001.json"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("post", "/predict", {"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "malformed_json"),
        ("post", "/predict", {"data": b'{"inputs": [[NaN, 0, 0]]}', "headers": {"Content-Type": "application/json"}}, 400, "malformed_json"),
        ("post", "/admin/retrain", {}, 401, "unauthorized"),
        ("post", "/admin/retrain", {"headers": {"Authorization": f"Bearer {TOKEN}x"}}, 401, "unauthorized"),
        ("get", "/no/such/path", {}, 404, "not_found"),
        ("get", "/predict", {}, 405, "method_not_allowed"),
        ("post", "/predict", {"data": b"inputs=1", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 415, "unsupported_media_type"),
        ("post", "/predict", {"json": {"inputs": [[1, True, 0]]}}, 422, "validation_error"),
        ("post", "/predict", {"json": {"inputs": [[1, 0]]}}, 422, "validation_error"),
        ("post", "/predict", {"json": {"inputs": []}}, 422, "validation_error"),
        ("post", "/admin/rollback", {"json": {"version": 99}, "headers": AUTH}, 404, "not_found"),
    ],
)  # fmt: skip
def test_errors_are_one_json_envelope_with_the_documented_status(
    shared_server: Gunicorn, method: str, path: str, kwargs: dict, status: int, code: str
) -> None:
    response = getattr(requests, method)(f"{shared_server.url}{path}", timeout=10, **kwargs)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == code
    if (path, method) in OPERATIONS:
        assert status in documented_statuses(path, method)
    else:
        assert status in (404, 405)
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Traceback" not in response.text


def test_oversized_body_is_refused_from_its_content_length(tmp_path: Path) -> None:
    server = Gunicorn(tmp_path / "small", env={"NEURON_MAX_BODY_BYTES": "2048"}).start()
    try:
        response = server.post(
            "/predict", data=b"x" * 4096, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
    finally:
        server.stop()


def test_admin_is_closed_without_a_token(tmp_path: Path) -> None:
    server = Gunicorn(tmp_path / "closed", env={"NEURON_ADMIN_TOKEN": ""}).start()
    try:
        response = server.post("/admin/retrain", headers=AUTH)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "admin_disabled"
    finally:
        server.stop()


def test_every_worker_serves_a_retrain_within_a_second(server: Gunicorn) -> None:
    # l2=0: four rows are too few for the default penalty to let the answer pass 0.9
    body = {"inputs": [[1, 0], [0, 1], [1, 1], [0, 0]], "targets": [0, 1, 1, 0], "l2": 0}
    retrained = server.post("/admin/retrain", body, headers=AUTH)
    assert retrained.status_code == 200, retrained.text
    version = retrained.json()["model_version"]
    assert version == 2
    # Keep-alive connections held open together: the fair worker hands each new one to the
    # worker holding fewer, so within a few of them both workers answer (fresh connections
    # one after another may all reach the same worker).
    answers, sessions = [], []
    try:
        for _ in range(6):
            sessions.append(requests.Session())
            for session in sessions:
                answer = session.post(
                    f"{server.url}/predict", json={"inputs": [[0, 1]]}, timeout=10
                )
                answers.append(answer.json())
            if _predict_pids(server) == server.worker_pids():
                break
            time.sleep(0.02)  # a closed connection is counted until its worker reads the close
    finally:
        for session in sessions:
            session.close()
    assert {a["model_version"] for a in answers} == {version}
    assert all(a["predictions"][0] > 0.9 for a in answers)
    assert _predict_pids(server) == server.worker_pids()


def _predict_pids(server: Gunicorn) -> set[int]:
    """The workers that logged a /predict (each access line names its pid)."""
    return {
        line["pid"]
        for line in server.log_lines()
        if line.get("msg") == "request" and line.get("endpoint") == "/predict"
    }


def test_metrics_add_up_across_workers(server: Gunicorn) -> None:
    sent = 40
    for _ in range(sent):
        assert server.post("/predict", {"inputs": [[1, 0, 0], [0, 0, 1]]}).status_code == 200
    for _ in range(3):
        assert server.post("/predict", {"inputs": [[1, 0]]}).status_code == 422
    text = server.get("/metrics").text
    assert (
        sample(
            text,
            'neuron_http_request_duration_seconds_count{endpoint="/predict",method="POST",status="200"}',
        )
        == sent
    )
    assert (
        sample(
            text,
            'neuron_http_request_duration_seconds_count{endpoint="/predict",method="POST",status="422"}',
        )
        == 3
    )
    assert sample(text, "neuron_predictions_total") == 2 * sent
    assert sample(text, 'neuron_predicted_probability_bucket{le="+Inf"}') == 2 * sent
    assert sample(text, "neuron_model_version") == 1
    assert sample(text, "neuron_model_inputs") == 3


def test_restart_keeps_the_latest_version(server: Gunicorn) -> None:
    body = {"inputs": [[0, 0, 1], [1, 1, 1]], "targets": [1, 0], "iterations": 2000}
    version = server.post("/admin/retrain", body, headers=AUTH).json()["model_version"]
    before = server.post("/predict", {"inputs": [[0, 0, 1]]}).json()
    server.restart()
    after = server.post("/predict", {"inputs": [[0, 0, 1]]}).json()
    assert after == before
    assert after["model_version"] == version == 2


def test_corrupted_newest_version_falls_back_to_the_previous(server: Gunicorn) -> None:
    body = {"inputs": [[0, 0, 1], [1, 1, 1]], "targets": [1, 0], "iterations": 2000}
    assert server.post("/admin/retrain", body, headers=AUTH).json()["model_version"] == 2
    server.stop()
    newest = _version_file(server, 2)
    newest.write_bytes(newest.read_bytes().replace(b'"weights": [', b'"weights": [0.5, ', 1))
    server.start()
    answer = server.post("/predict", {"inputs": [[1, 0, 0]]}).json()
    assert answer["model_version"] == 1
    assert answer["predictions"][0] == pytest.approx(REFERENCE, abs=1e-6)
    assert not newest.exists()
    assert Path(f"{newest}.corrupt").exists()
    assert sample(server.get("/metrics").text, "neuron_model_load_failures_total") >= 1
    errors = [line for line in server.log_lines() if line["level"] == "error"]
    assert any("quarantined" in line["msg"] for line in errors)


def test_predictions_match_the_weights_the_model_reports(server: Gunicorn) -> None:
    weights = np.array(server.get("/model").json()["weights"]).reshape(-1, 1)
    rows = np.random.default_rng(0).uniform(-3, 3, size=(100, 3))
    answer = server.post("/predict", {"inputs": rows.tolist()}).json()
    expected = Neuron(weights)(rows)
    assert np.allclose(answer["predictions"], expected, rtol=0, atol=1e-12)


def test_request_id_is_echoed_and_logged(server: Gunicorn) -> None:
    response = server.post("/predict", {"inputs": [[1, 0, 0]]}, headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert any(line.get("request_id") == "abc-123" for line in server.log_lines())
    generated = server.post("/predict", {"inputs": [[1, 0, 0]]}).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)


def test_generated_request_ids_differ_across_workers(server: Gunicorn) -> None:
    """Ids come from the random module, which each forked worker must reseed: were it not,
    both workers would draw the same ids in the same order. A kept-alive connection holds one
    worker, so the fair accept gives the new ones to the other."""
    ids: dict[str, int] = {}
    with requests.Session() as kept:
        for i in range(40):
            url = f"{server.url}/predict"
            answer = (kept if i % 2 else requests).post(
                url, json={"inputs": [[1, 0, 0]]}, timeout=10
            )
            ids[answer.headers["X-Request-ID"]] = i
    pids = {line["pid"] for line in server.log_lines() if line.get("request_id") in ids}
    assert len(pids) == 2, "both workers should have answered"
    assert len(ids) == 40, "a request id was drawn twice"


def test_the_token_is_never_logged(server: Gunicorn) -> None:
    server.post("/admin/retrain", headers=AUTH)
    server.post("/admin/retrain", headers={"Authorization": "Bearer wrong-token-0123456789"})
    assert TOKEN not in server.log()
    assert "wrong-token" not in server.log()


def test_status_counts_match_the_log(server: Gunicorn) -> None:
    """The access log and the latency histogram see the same requests."""
    for path in ("/healthz", "/readyz", "/model"):
        assert server.get(path).status_code == 200
    logged = Counter(
        (line["endpoint"], line["status"])
        for line in server.log_lines()
        if line.get("msg") == "request"
    )
    text = server.get("/metrics").text
    for (endpoint, status), count in logged.items():
        method = "POST" if endpoint == "/predict" else "GET"
        name = f'neuron_http_request_duration_seconds_count{{endpoint="{endpoint}",method="{method}",status="{status}"}}'
        assert sample(text, name) == count


class _OwnMetricsDir(Gunicorn):
    def env(self) -> dict[str, str]:
        env = super().env()
        del env["PROMETHEUS_MULTIPROC_DIR"]
        return env


def test_a_metrics_directory_made_by_the_config_is_removed_on_exit(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    before = set(shm.glob("neuron-metrics-*"))
    server = _OwnMetricsDir(tmp_path / "own").start()
    try:
        made = set(shm.glob("neuron-metrics-*")) - before
        assert len(made) == 1
        server.post("/predict", {"inputs": [[1, 0, 0]]})
        assert any((made_dir := next(iter(made))).iterdir())
    finally:
        server.stop()
    assert not made_dir.exists()
