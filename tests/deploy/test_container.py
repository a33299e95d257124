"""The image and docker-compose.yml on a real Docker engine (run by `make test-container`).

deploy/scripts/test-container.sh provides the engine (DOCKER_HOST), the compose command
(NEURON_COMPOSE), the compose files (NEURON_COMPOSE_FILES) and the base image (BASE_IMAGE). The
`neuron` service is built and started alone (`--no-deps`: Prometheus' and Grafana's images come
from a registry CI cannot reach), on a free 127.0.0.1 port, under a project name of its own.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from .conftest import ROOT
from .procs import free_port, wait_until

HEALTHY_TIMEOUT = 150.0
BUILD_TIMEOUT = 900.0


class Project:
    def __init__(self) -> None:
        self.name = f"neuron-ci-{os.getpid()}"
        self.port = free_port()
        self.token = secrets.token_urlsafe(24)
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = shlex.split(os.environ.get("NEURON_COMPOSE", "docker compose"))
        self.files = shlex.split(os.environ.get("NEURON_COMPOSE_FILES", "-f docker-compose.yml"))
        self.env = {
            **os.environ,
            "NEURON_ADMIN_TOKEN": self.token,
            "GRAFANA_ADMIN_PASSWORD": secrets.token_urlsafe(12),
            "NEURON_PORT": str(self.port),
            "NEURON_IMAGE_TAG": self.name,
            "DOCKER_BUILDKIT": "0",
            "COMPOSE_BAKE": "false",
        }
        self.image = f"neuron-service:{self.name}"

    def compose(self, *args: str, timeout: float = 300) -> str:
        argv = [*self.command, *self.files, "-p", self.name, *args]
        result = subprocess.run(
            argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert result.returncode == 0, f"{shlex.join(argv)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def docker(self, *args: str) -> str:
        result = subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def container(self) -> str:
        ids = self.compose("ps", "-q", "neuron").split()
        assert len(ids) == 1, ids
        return ids[0]

    def wait_healthy(self) -> None:
        container = self.container()

        def healthy() -> bool:
            state = json.loads(self.docker("inspect", "-f", "{{json .State}}", container))
            assert state["Status"] in ("created", "running", "restarting"), state
            return bool(state.get("Health", {}).get("Status") == "healthy")

        try:
            wait_until(healthy, HEALTHY_TIMEOUT, "the neuron container to be healthy", 1.0)
        except TimeoutError:
            print(self.compose("logs", "--no-color", "neuron")[-4000:])
            raise

    def exec(self, *argv: str) -> str:
        return self.compose("exec", "-T", "neuron", *argv).strip()


@pytest.fixture(scope="module")
def project() -> Iterator[Project]:
    project = Project()
    try:
        started = time.monotonic()
        project.compose("build", "neuron", timeout=BUILD_TIMEOUT)
        print(f"\nimage built in {time.monotonic() - started:.0f} s")
        started = time.monotonic()
        project.compose("up", "-d", "--no-deps", "--no-build", "neuron")
        project.wait_healthy()
        print(f"container healthy in {time.monotonic() - started:.0f} s")
        yield project
    finally:
        subprocess.run(
            [*project.command, *project.files, "-p", project.name, "down", "-v", "--rmi", "local"],
            cwd=ROOT,
            env=project.env,
            capture_output=True,
            timeout=180,
            check=False,
        )
        subprocess.run(
            ["docker", "image", "rm", "-f", project.image],
            env=project.env,
            capture_output=True,
            timeout=60,
            check=False,
        )


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
        headers={"Authorization": f"Bearer {project.token}"},
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


def test_down_removes_container_and_volume(project: Project) -> None:
    volumes_before = project.docker("volume", "ls", "-q", "--filter", f"name={project.name}")
    assert volumes_before.split(), "the stack should keep its model on a named volume"
    project.compose("down", "-v")
    assert not project.compose("ps", "-q").split()
    assert not project.docker("volume", "ls", "-q", "--filter", f"name={project.name}").split()
