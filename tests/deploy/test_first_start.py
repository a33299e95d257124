"""`docker compose up` on a fresh clone with no `.env` and no variables (issue 13).

Run by `make test-container`; tests/deploy/stack.py says what is real (everything but the
Prometheus and Grafana images, which are stand-ins). The `secrets` service must generate the
admin token and Grafana's password on the first start, into volumes only their reader can read;
they survive restarts and `down`, and a value set in `.env` later wins. The tests run in order
on one stack.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .stack import Stack, clone

# What secretfiles generates: token_urlsafe(32), 43 characters.
GENERATED = re.compile(r"[A-Za-z0-9_-]{43}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, stack_images: None) -> Iterator[Stack]:
    directory = clone(tmp_path_factory.mktemp("fresh-clone") / "neuron-service")
    assert not (directory / ".env").exists()
    stack = Stack("fresh", directory)
    try:
        # As a user would: `up` builds the images itself (this module runs first, so it does).
        stack.up(build=True)
        yield stack
    finally:
        stack.down("-v")


@pytest.fixture(scope="module")
def first(stack: Stack) -> dict[str, str]:
    """The token and password the first start generated."""
    return {"token": stack.token(), "password": stack.grafana_password()}


def test_the_secrets_service_ran_once_and_exited_cleanly(stack: Stack) -> None:
    state = stack.state("secrets")
    assert (state["Status"], state["ExitCode"]) == ("exited", 0), state
    log = stack.compose("logs", "--no-color", "secrets")
    assert "admin-token generated" in log and "admin-password generated" in log, log


def test_a_long_random_token_is_generated_and_guards_admin(
    stack: Stack, first: dict[str, str]
) -> None:
    token, password = first["token"], first["password"]
    assert GENERATED.fullmatch(token), len(token)
    assert GENERATED.fullmatch(password), len(password)
    assert token != password
    assert stack.retrain(None).status_code == 401
    assert stack.retrain(token[:-1] + ("A" if token[-1] != "A" else "B")).status_code == 401
    retrain = stack.retrain(token)
    assert retrain.status_code == 200, retrain.text
    logs = stack.compose("logs", "--no-color")
    assert token not in logs and password not in logs, "a secret was logged"


def test_each_secret_is_readable_only_by_its_reader(stack: Stack) -> None:
    token_file = stack.exec("printenv", "NEURON_ADMIN_TOKEN_FILE")
    assert stack.exec("stat", "-c", "%u:%g %a", token_file) == "10001:10001 400"
    assert stack.exec("id", "-u") == "10001"
    # neuron's container holds the token and nothing of Grafana's
    assert stack.exec("ls", "-A", str(Path(token_file).parent)) == Path(token_file).name
    password_file = stack.exec("printenv", "GF_SECURITY_ADMIN_PASSWORD__FILE", service="grafana")
    assert stack.exec("stat", "-c", "%u:%g %a", password_file, service="grafana") == "472:0 400"
    assert stack.exec("id", "-u", service="grafana") == "472"
    assert (
        stack.exec("ls", "-A", str(Path(password_file).parent), service="grafana")
        == Path(password_file).name
    )
    # no secret travels in a variable
    for service in ("neuron", "grafana"):
        env = stack.exec("env", service=service)
        assert "NEURON_ADMIN_TOKEN=" not in env and "GF_SECURITY_ADMIN_PASSWORD=" not in env


def test_grafana_gets_its_password_from_the_file(stack: Stack, first: dict[str, str]) -> None:
    """The stand-in resolves GF_SECURITY_ADMIN_PASSWORD__FILE as Grafana's entrypoint does."""
    assert stack.grafana_user(first["password"]) == 200
    assert stack.grafana_user(first["password"][:-1]) == 401
    assert stack.grafana_user(first["token"]) == 401


def test_the_token_survives_a_restart(stack: Stack, first: dict[str, str]) -> None:
    stack.compose("restart", "neuron")
    stack.wait_healthy()
    assert stack.token() == first["token"]
    assert stack.retrain(first["token"]).status_code == 200
    assert stack.retrain(None).status_code == 401


def test_the_secrets_and_the_model_survive_down_and_up(stack: Stack, first: dict[str, str]) -> None:
    version = requests.get(f"{stack.url}/model", timeout=10).json()["version"]
    stack.compose("down")
    assert not stack.compose("ps", "-a", "-q").split()
    stack.up()
    assert stack.token() == first["token"]
    assert stack.grafana_password() == first["password"]
    assert "admin-token kept" in stack.compose("logs", "--no-color", "secrets")
    assert requests.get(f"{stack.url}/model", timeout=10).json()["version"] == version
    assert stack.retrain(first["token"]).status_code == 200


def test_a_token_set_in_env_later_wins(stack: Stack, first: dict[str, str]) -> None:
    chosen = secrets.token_urlsafe(24)
    (stack.dir / ".env").write_text(f"NEURON_ADMIN_TOKEN={chosen}\n", encoding="utf-8")
    # neuron reads its token at start-up: a changed .env needs the service recreated
    stack.up("--force-recreate")
    assert stack.token() == chosen
    assert stack.retrain(chosen).status_code == 200
    assert stack.retrain(first["token"]).status_code == 401
    # Grafana's password was not set in .env: still the generated one
    assert stack.grafana_password() == first["password"]


def test_down_v_removes_the_secrets(stack: Stack) -> None:
    volumes = stack.volumes()
    assert {f"{stack.name}_neuron-secrets", f"{stack.name}_grafana-secrets"} <= set(volumes)
    stack.compose("down", "-v")
    assert stack.volumes() == []
