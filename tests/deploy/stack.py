"""The compose stack of a fresh clone on a real Docker engine (used under `make test-container`).

deploy/scripts/test-container.sh provides the engine (DOCKER_HOST), the compose command
(NEURON_COMPOSE), extra compose files (NEURON_COMPOSE_FILES) and the base image (BASE_IMAGE).

Each Stack is a `git clone` of this repository's HEAD in a temp directory, as a new user gets
it: so only committed files count, and there is no `.env` unless the test writes one. The whole
docker-compose.yml runs (the `secrets` init service, neuron, prometheus, grafana), except that
Prometheus' and Grafana's images are replaced by local stand-ins (tests/deploy/compose.standins.yml:
no image registry is reachable in CI). The environment handed to compose carries only the test's
plumbing (engine, base image, free host ports, image tag, classic builder), never a secret.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

from .conftest import ROOT
from .procs import free_port, wait_until

HEALTHY_TIMEOUT = 150.0
BUILD_TIMEOUT = 900.0
SECRET_VARIABLES = ("NEURON_ADMIN_TOKEN", "GRAFANA_ADMIN_PASSWORD")
# The image tag every Stack of this run shares, so the second clone's build hits the cache.
IMAGE_TAG = f"ci-{os.getpid()}"
IMAGES = (
    f"neuron-service:{IMAGE_TAG}",
    f"localhost/neuron-standin-prometheus:{IMAGE_TAG}",
    f"localhost/neuron-standin-grafana:{IMAGE_TAG}",
)


def clone(into: Path) -> Path:
    """A clone of this repository's HEAD commit (what CI and a new user start from)."""
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(ROOT), str(into)], check=True)
    subprocess.run(["git", "-C", str(into), "checkout", "--quiet", head], check=True)
    return into


class Stack:
    def __init__(self, name: str, directory: Path) -> None:
        self.name = f"neuron-{name}-{os.getpid()}"
        self.dir = directory
        self.port = free_port()
        self.grafana_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grafana_url = f"http://127.0.0.1:{self.grafana_port}"
        self.command = shlex.split(os.environ.get("NEURON_COMPOSE", "docker compose"))
        extra = shlex.split(os.environ.get("NEURON_COMPOSE_FILES", "-f docker-compose.yml"))
        self.files = [*extra, "-f", "tests/deploy/compose.standins.yml"]
        self.env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
        self.env.update(
            NEURON_PORT=str(self.port),
            PROMETHEUS_PORT=str(free_port()),
            GRAFANA_PORT=str(self.grafana_port),
            NEURON_IMAGE_TAG=IMAGE_TAG,
            DOCKER_BUILDKIT="0",
            COMPOSE_BAKE="false",
        )
        self.image = IMAGES[0]

    def compose(self, *args: str, timeout: float = 300) -> str:
        argv = [*self.command, *self.files, "-p", self.name, *args]
        result = subprocess.run(
            argv, cwd=self.dir, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert result.returncode == 0, f"{shlex.join(argv)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def docker(self, *args: str) -> str:
        result = subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def build(self) -> None:
        started = time.monotonic()
        self.compose("build", timeout=BUILD_TIMEOUT)
        print(f"\n{self.name}: images built in {time.monotonic() - started:.0f} s")

    def up(self, *extra: str, build: bool = False) -> None:
        """`up -d --wait` (building what is missing if build), then until Grafana answers."""
        started = time.monotonic()
        timeout = HEALTHY_TIMEOUT + 60 + (BUILD_TIMEOUT if build else 0)
        try:
            self.compose(
                "up", "-d", "--wait", *extra, *([] if build else ["--no-build"]), timeout=timeout
            )
            self.wait_healthy()
            wait_until(self.grafana_answers, 30, "the grafana stand-in", 0.5)
        except (AssertionError, TimeoutError):
            print(self.compose("logs", "--no-color")[-6000:])
            raise
        print(f"{self.name}: up in {time.monotonic() - started:.0f} s")

    def grafana_answers(self) -> bool:
        try:
            return requests.get(f"{self.grafana_url}/api/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def container(self, service: str = "neuron") -> str:
        ids = self.compose("ps", "-a", "-q", service).split()
        assert len(ids) == 1, ids
        return ids[0]

    def state(self, service: str = "neuron") -> dict[str, Any]:
        state = json.loads(self.docker("inspect", "-f", "{{json .State}}", self.container(service)))
        assert isinstance(state, dict)
        return state

    def wait_healthy(self) -> None:
        def healthy() -> bool:
            state = self.state()
            assert state["Status"] in ("created", "running", "restarting"), state
            return bool(state.get("Health", {}).get("Status") == "healthy")

        wait_until(healthy, HEALTHY_TIMEOUT, "the neuron container to be healthy", 1.0)

    def exec(self, *argv: str, service: str = "neuron") -> str:
        return self.compose("exec", "-T", service, *argv).strip()

    def token(self) -> str:
        """The admin token as the README says to read it."""
        return self.exec("sh", "-c", 'cat "$NEURON_ADMIN_TOKEN_FILE"')

    def grafana_password(self) -> str:
        return self.exec("sh", "-c", 'cat "$GF_SECURITY_ADMIN_PASSWORD__FILE"', service="grafana")

    def retrain(self, token: str | None) -> requests.Response:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return requests.post(
            f"{self.url}/admin/retrain", headers=headers, json={"seed": 7}, timeout=60
        )

    def grafana_user(self, password: str) -> int:
        response = requests.get(
            f"{self.grafana_url}/api/user", auth=("admin", password), timeout=10
        )
        return response.status_code

    def volumes(self) -> list[str]:
        listed = self.docker("volume", "ls", "-q", "--filter", f"name={self.name}_")
        return sorted(listed.split())

    def down(self, *extra: str) -> None:
        subprocess.run(
            [*self.command, *self.files, "-p", self.name, "down", *extra],
            cwd=self.dir,
            env=self.env,
            capture_output=True,
            timeout=180,
            check=False,
        )


def remove_images(env: dict[str, str]) -> None:
    """At the end of the session: the images every Stack of this run shared."""
    subprocess.run(
        ["docker", "image", "rm", "-f", *IMAGES],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
