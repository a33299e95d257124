"""The image and docker-compose.yml on a real Docker engine, with the user's own secrets in `.env`.

Run by `make test-container` (see tests/deploy/stack.py for what is real: everything but the
Prometheus and Grafana images). A fresh clone gets a `.env` holding a chosen admin token and
Grafana password, as .env.example describes; the stack must use exactly those. The first start
with no `.env` at all is tests/deploy/test_first_start.py.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .stack import Stack, clone


class Project(Stack):
    """A clone whose `.env` is .env.example filled in with a chosen token and password."""

    def __init__(self, directory: Path) -> None:
        super().__init__("env", directory)
        self.chosen_token = secrets.token_urlsafe(24)
        self.chosen_password = secrets.token_urlsafe(12)
        example = (directory / ".env.example").read_text(encoding="utf-8")
        filled = example.replace(
            "NEURON_ADMIN_TOKEN=\n", f"NEURON_ADMIN_TOKEN={self.chosen_token}\n"
        ).replace("GRAFANA_ADMIN_PASSWORD=\n", f"GRAFANA_ADMIN_PASSWORD={self.chosen_password}\n")
        assert self.chosen_token in filled and self.chosen_password in filled
        (directory / ".env").write_text(filled, encoding="utf-8")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, stack_images: None) -> Iterator[Project]:
    stack = Project(clone(tmp_path_factory.mktemp("env-clone") / "neuron-service"))
    try:
        stack.build()
        stack.up()
        yield stack
    finally:
        stack.down("-v")


def test_the_chosen_token_is_the_one_served(project: Project) -> None:
    chosen = project.chosen_token
    assert project.token() == chosen
    assert project.retrain(None).status_code == 401
    wrong = chosen[:-1] + ("A" if chosen[-1] != "A" else "B")
    assert project.retrain(wrong).status_code == 401
    assert project.retrain(chosen).status_code == 200


def test_the_chosen_grafana_password_is_the_one_set(project: Project) -> None:
    chosen = project.chosen_password
    assert project.grafana_password() == chosen
    assert project.grafana_user(chosen) == 200
    assert project.grafana_user(chosen + "x") == 401


def image_config(project: Project) -> dict[str, Any]:
    config = json.loads(project.docker("image", "inspect", "-f", "{{json .Config}}", project.image))
    assert isinstance(config, dict)
    return config


def test_image_runs_as_a_numeric_non_root_user(project: Project) -> None:
    user = image_config(project)["User"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, user
    assert project.exec("id", "-u") == uid
    # gunicorn itself (pid 1), not only a shell exec'd next to it
    status = project.exec("cat", "/proc/1/status")
    real_uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    assert real_uid == uid


def test_image_metadata(project: Project) -> None:
    config = image_config(project)
    assert config["Healthcheck"]["Test"][0] == "CMD", "HEALTHCHECK must be exec form"
    assert "/readyz" in " ".join(config["Healthcheck"]["Test"])
    assert config["Cmd"][0] == "gunicorn" or config["Entrypoint"], "exec-form CMD/ENTRYPOINT"
    assert "/data" in (config.get("Volumes") or {})
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/dev/shm/")
    labels = config.get("Labels") or {}
    assert labels.get("org.opencontainers.image.title") == "neuron-service"


def test_workers_keep_heartbeat_and_metrics_on_dev_shm(project: Project) -> None:
    metrics_dir = project.exec("printenv", "PROMETHEUS_MULTIPROC_DIR")
    assert project.exec("ls", metrics_dir), "no metrics files in the multiprocess directory"
    # gunicorn's heartbeat files are unlinked temp files: look at the workers' open fds.
    fds = project.exec("sh", "-c", "ls -l /proc/[0-9]*/fd 2>/dev/null")
    assert "/dev/shm/wgunicorn-" in fds, fds[-2000:]


def test_predict_and_errors_over_http(project: Project) -> None:
    response = requests.post(f"{project.url}/predict", json={"inputs": [[1, 0, 0]]}, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["predictions"]) == 1 and 0.0 <= body["predictions"][0] <= 1.0
    bad = requests.post(f"{project.url}/predict", json={"inputs": [[1, 0]]}, timeout=10)
    assert bad.status_code == 422
    assert bad.headers["Content-Type"].startswith("application/json")
    assert bad.json()["error"]["code"]
    metrics = requests.get(f"{project.url}/metrics", timeout=10)
    assert "neuron_predictions_total" in metrics.text


def test_retrain_survives_restart(project: Project) -> None:
    denied = requests.post(f"{project.url}/admin/retrain", timeout=10)
    assert denied.status_code in (401, 403)
    before = requests.get(f"{project.url}/model", timeout=10).json()
    retrain = requests.post(
        f"{project.url}/admin/retrain",
        headers={"Authorization": f"Bearer {project.chosen_token}"},
        json={"seed": 7},
        timeout=60,
    )
    assert retrain.status_code == 200, retrain.text
    after = requests.get(f"{project.url}/model", timeout=10).json()
    assert after["version"] > before["version"]

    project.compose("restart", "neuron")
    project.wait_healthy()
    served = requests.get(f"{project.url}/model", timeout=10).json()
    assert served["version"] == after["version"]
    assert served["weights"] == after["weights"]
    assert project.exec("ls", "/data"), "the model directory is empty"


def test_a_training_job_runs_in_the_containers_training_process(project: Project) -> None:
    """The dirty arbiter's training process, as uid 10001, spooling under /data/jobs."""
    auth = {"Authorization": f"Bearer {project.chosen_token}"}
    before = requests.get(f"{project.url}/model", timeout=10).json()["version"]
    rows = "".join(f"{i % 7},{(i * 3) % 5},{int(i % 7 > 3)}\n" for i in range(400))
    posted = requests.post(
        f"{project.url}/admin/jobs",
        data=("a,b,y\n" + rows).encode(),
        params={"standardize": "true"},
        headers={**auth, "Content-Type": "text/csv"},
        timeout=30,
    )
    assert posted.status_code == 202, posted.text
    location = f"{project.url}{posted.headers['Location']}"
    deadline = time.monotonic() + 60
    job = posted.json()
    while job["state"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
        job = requests.get(location, headers=auth, timeout=10).json()
    assert job["state"] == "succeeded", job
    assert requests.get(f"{project.url}/model", timeout=10).json()["version"] > before
    assert job["id"] + ".json" in project.exec("ls", "/data/jobs")
    assert ".body" not in project.exec("ls", "/data/jobs")  # read, trained, deleted


def test_down_removes_container_and_volume(project: Project) -> None:
    volumes_before = project.docker("volume", "ls", "-q", "--filter", f"name={project.name}")
    assert volumes_before.split(), "the stack should keep its model on a named volume"
    project.compose("down", "-v")
    assert not project.compose("ps", "-a", "-q").split()
    assert not project.docker("volume", "ls", "-q", "--filter", f"name={project.name}").split()
