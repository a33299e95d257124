"""Checks of the container and monitoring files that need no Docker engine.

hadolint, Compose's own parser, promtool and the dashboard's structure; the live evaluation of
every query lives in test_monitoring.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import IN_CI, ROOT, compose, tool

DASHBOARD = ROOT / "deploy/grafana/dashboards/neuron-service.json"
DATASOURCES = ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml"
PROMETHEUS_DIR = ROOT / "deploy/prometheus"
# The secrets a user may set in .env; unset, the stack generates them on its first start.
SECRET_VARIABLES = ("NEURON_ADMIN_TOKEN", "GRAFANA_ADMIN_PASSWORD")
NO_SECRETS = dict.fromkeys(SECRET_VARIABLES, "")


def run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env}
    return subprocess.run(
        argv, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120, check=False
    )


def compose_config(*extra: str, env: dict[str, str] | None = None) -> Any:
    """`docker compose config` with no secret set (or with env), from a directory with no .env."""
    result = run(
        [compose(), "-f", "docker-compose.yml", "--project-directory", str(ROOT), "config", *extra],
        **(NO_SECRETS if env is None else env),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def services(env: dict[str, str] | None = None) -> dict[str, Any]:
    config = json.loads(compose_config("--format", "json", env=env))
    assert isinstance(config["services"], dict)
    return config["services"]


def test_hadolint_clean_at_warning_level() -> None:
    result = run([tool("hadolint"), "--failure-threshold", "warning", "Dockerfile"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_with_the_classic_builder() -> None:
    """BuildKit-only syntax fails under DOCKER_BUILDKIT=0, which is what CI here has."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    buildkit_only = {
        "RUN --mount": r"^\s*RUN\s+--mount",
        "heredoc": r"<<-?\s*['\"]?[A-Z]+",
        "COPY/ADD --chmod": r"^\s*(COPY|ADD)\s+.*--chmod",
        "# syntax= directive": r"^#\s*syntax\s*=",
    }
    found = [name for name, pattern in buildkit_only.items() if re.search(pattern, text, re.M)]
    assert not found, f"BuildKit-only syntax in Dockerfile: {found}"


def test_compose_file_is_valid() -> None:
    compose_config("--quiet")


def test_compose_needs_no_variable_and_ships_no_secret() -> None:
    """A fresh clone starts with nothing set; no service carries a default token or password."""
    config = services()
    assert {name: config["secrets"]["environment"][name] for name in SECRET_VARIABLES} == NO_SECRETS
    for name, service in config.items():
        env = service.get("environment") or {}
        if name != "secrets":
            assert not set(env) & {"NEURON_ADMIN_TOKEN", "GF_SECURITY_ADMIN_PASSWORD"}, name
    assert "NEURON_ADMIN_TOKEN_FILE" in config["neuron"]["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD__FILE" in config["grafana"]["environment"]


def test_values_set_by_the_user_reach_only_the_secrets_service() -> None:
    chosen = {"NEURON_ADMIN_TOKEN": "chosen-token-0123456789", "GRAFANA_ADMIN_PASSWORD": "pw-42"}
    config = services(env=chosen)
    assert {k: config["secrets"]["environment"][k] for k in SECRET_VARIABLES} == chosen
    rendered = json.dumps({k: v for k, v in config.items() if k != "secrets"})
    assert not any(value in rendered for value in chosen.values())


def secret_files(config: dict[str, Any]) -> dict[str, tuple[str, int, int]]:
    """What the secrets service writes: file path in its container -> (volume, uid, gid)."""
    command = config["secrets"]["command"]
    assert command[:3] == ["python", "-m", "service.server.secretfiles"], command
    mounts = {m["target"]: m["source"] for m in config["secrets"]["volumes"]}
    files = {}
    for spec in command[3:]:
        path, _, rest = spec.rpartition("=")
        uid, gid = (int(n) for n in rest.split(":")[:2])
        files[path] = (mounts[str(Path(path).parent)], uid, gid)
    return files


@pytest.mark.parametrize(
    ("service", "variable", "reader_uid"),
    [
        ("neuron", "NEURON_ADMIN_TOKEN_FILE", "dockerfile"),
        # the grafana/grafana-oss image runs as 472:0
        ("grafana", "GF_SECURITY_ADMIN_PASSWORD__FILE", (472, 0)),
    ],
)
def test_each_service_reads_the_file_the_secrets_service_writes_for_it(
    service: str, variable: str, reader_uid: str | tuple[int, int]
) -> None:
    config = services()
    path = Path(config[service]["environment"][variable])
    mounts = {m["target"]: m for m in config[service]["volumes"]}
    mount = mounts[str(path.parent)]
    assert mount["type"] == "volume" and mount.get("read_only") is True, mount
    written = {
        (volume, Path(file).name): (uid, gid)
        for file, (volume, uid, gid) in secret_files(config).items()
    }
    owner = written[(mount["source"], path.name)]
    if reader_uid == "dockerfile":
        user = re.search(r"^USER\s+(\d+):(\d+)", (ROOT / "Dockerfile").read_text(), re.M)
        assert user is not None
        reader_uid = (int(user.group(1)), int(user.group(2)))
    assert owner == reader_uid
    # and no other service mounts that volume
    others = [
        name
        for name, other in config.items()
        if name not in (service, "secrets")
        and any(m.get("source") == mount["source"] for m in other.get("volumes", []))
    ]
    assert not others
    assert config[service]["depends_on"]["secrets"]["condition"] == (
        "service_completed_successfully"
    )


def test_the_secrets_service_runs_once_with_little_power() -> None:
    secrets_service = services()["secrets"]
    assert secrets_service["restart"] == "no"
    assert secrets_service["network_mode"] == "none"
    assert secrets_service["read_only"] is True
    assert secrets_service["cap_drop"] == ["ALL"]
    assert set(secrets_service["cap_add"]) <= {"CHOWN", "DAC_OVERRIDE", "FOWNER"}
    assert "ports" not in secrets_service


def test_compose_works_for_v1_too() -> None:
    """Compose v1.29 rejects a top-level `name:`, and v2 warns about `version:`."""
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    assert not re.search(r"^(version|name):", text, re.M)


def test_compose_v1_29_accepts_the_file() -> None:
    """Debian's docker-compose 1.29 (installed by make test-container) parses the same file."""
    v1 = Path("/usr/bin/docker-compose")
    if not v1.exists():
        if IN_CI:
            pytest.fail("Debian's docker-compose (1.29) is not installed")
        pytest.skip("Debian's docker-compose (1.29) is not installed")
    version = run([str(v1), "version", "--short"])
    assert version.stdout.startswith("1.29"), version.stdout
    result = run([str(v1), "-f", "docker-compose.yml", "config", "-q"], **NO_SECRETS)
    assert result.returncode == 0, result.stderr


def test_compose_mounts_exist() -> None:
    """Every bind mount in the stack points at a file or directory of this repository."""
    config = json.loads(compose_config("--format", "json"))
    binds = [
        volume["source"]
        for service in config["services"].values()
        for volume in service.get("volumes", [])
        if volume["type"] == "bind"
    ]
    assert binds, "the stack mounts no configuration"
    missing = [source for source in binds if not Path(source).exists()]
    assert not missing


def test_example_env_ships_no_secret() -> None:
    values = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    assert set(SECRET_VARIABLES) <= set(values)
    assert all(values[name] == "" for name in SECRET_VARIABLES)


def test_promtool_accepts_config_and_rules() -> None:
    promtool = tool("promtool")
    config = run([promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")])
    assert config.returncode == 0, config.stdout + config.stderr
    rules = run([promtool, "check", "rules", str(PROMETHEUS_DIR / "alerts.yml")])
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    """alerts.test.yml: the drift alert fires on a lasting shift, not on a burst or below."""
    tested = run([tool("promtool"), "test", "rules", str(PROMETHEUS_DIR / "alerts.test.yml")])
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def dashboard_panels() -> list[dict[str, Any]]:
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    return [p for p in panels if p.get("type") != "row"]


def test_dashboard_panels_are_well_formed() -> None:
    panels = dashboard_panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    uid = re.search(r"uid:\s*(\S+)", DATASOURCES.read_text(encoding="utf-8"))
    assert uid is not None
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == uid.group(1), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]


def test_dashboard_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard_panels():
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


@pytest.mark.parametrize(
    "subject",
    [
        "request rate",
        "error ratio",
        "latency",
        "predictions per second",
        "probability distribution",
        "training loss",
        "model version",
        "retrains",
    ],
)
def test_dashboard_has_the_panels_the_issue_asks_for(subject: str) -> None:
    titles = [p["title"].lower() for p in dashboard_panels()]
    assert any(subject in title for title in titles), titles


# -- several replicas: deploy/compose.replicas.yml -------------------------------------------
REPLICAS_FILE = "deploy/compose.replicas.yml"
# The replicas file asks for its secrets in .env (it has no first-start generator yet).
REPLICAS_ENV = {
    "NEURON_ADMIN_TOKEN": "x" * 16,
    "GRAFANA_ADMIN_PASSWORD": "placeholder",
    "POSTGRES_PASSWORD": "placeholder-password",
}


def replicas_config(**env: str) -> dict[str, Any]:
    result = run(
        [compose(), "-f", REPLICAS_FILE, "config", "--format", "json"], **{**REPLICAS_ENV, **env}
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_replicas_compose_runs_postgres_replicas_and_haproxy_in_front() -> None:
    config = replicas_config()
    services = config["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["haproxy"]["image"].startswith("haproxy:")  # the official image
    neuron = services["neuron"]
    assert neuron["deploy"]["replicas"] >= 2
    assert neuron["environment"]["NEURON_STORE_URL"].startswith("postgresql://neuron:")
    assert "@postgres:5432/" in neuron["environment"]["NEURON_STORE_URL"]
    assert "ports" not in neuron, "replicas are reached through haproxy only"
    assert [p["target"] for p in services["haproxy"]["ports"]] == [8000]
    assert all(p["host_ip"] == "127.0.0.1" for s in services.values() for p in s.get("ports", []))
    binds = [
        v["source"] for s in services.values() for v in s.get("volumes", []) if v["type"] == "bind"
    ]
    assert binds and all(Path(source).exists() for source in binds), binds
    haproxy_cfg = next(v for v in services["haproxy"]["volumes"] if v["type"] == "bind")
    assert Path(haproxy_cfg["source"], "haproxy.cfg").exists()


def test_replicas_compose_refuses_to_start_without_its_secrets() -> None:
    for missing in ("POSTGRES_PASSWORD", "NEURON_ADMIN_TOKEN", "GRAFANA_ADMIN_PASSWORD"):
        result = run(
            [compose(), "-f", REPLICAS_FILE, "config", "--quiet"], **{**REPLICAS_ENV, missing: ""}
        )
        assert result.returncode != 0, missing
        assert ".env" in result.stderr


def test_replicas_prometheus_scrapes_every_replica_not_the_balancer() -> None:
    config = replicas_config()
    command = config["services"]["prometheus"]["command"]
    name = next(c.split("=", 1)[1] for c in command if c.startswith("--config.file="))
    path = PROMETHEUS_DIR / Path(name).name
    promtool = tool("promtool")
    checked = run([promtool, "check", "config", str(path)])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = path.read_text(encoding="utf-8")
    assert re.search(r"dns_sd_configs:\s*\n\s*- names: \[\"neuron\"\]", text), text
    assert "haproxy" not in re.sub(r"#.*", "", text)


def test_haproxy_config_is_valid_and_checks_readiness() -> None:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        pytest.skip("haproxy is not installed")
    config = ROOT / "deploy/haproxy/haproxy.cfg"
    result = run([haproxy, "-c", "-f", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "option httpchk GET /readyz" in config.read_text(encoding="utf-8")


def test_dashboard_shows_the_store_and_each_instance_version() -> None:
    exprs = {t["expr"] for p in dashboard_panels() for t in p["targets"]}
    assert "min(neuron_store_up)" in exprs
    assert "max by (instance) (neuron_model_version)" in exprs


def test_the_image_and_compose_serve_grpc_on_the_port_its_setting_names() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    bind = re.search(r"NEURON_GRPC_BIND=0\.0\.0\.0:(\d+)", dockerfile)
    assert bind is not None, "the image must serve gRPC on every interface"
    port = int(bind.group(1))
    exposed = re.search(r"^EXPOSE (.+)$", dockerfile, re.M)
    assert exposed is not None and str(port) in exposed.group(1).split()
    # The file as written (Compose v1 and v2 render ports differently): host 127.0.0.1 only.
    published = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["neuron"]
    grpc = [p for p in published["ports"] if p.endswith(f":{port}")]
    assert len(grpc) == 1 and grpc[0].startswith("127.0.0.1:"), published["ports"]
