"""Every Grafana panel query and every alert expression, evaluated by a real Prometheus.

Debian's prometheus runs deploy/prometheus/prometheus.yml and alerts.yml unchanged but for the
scrape target (127.0.0.1 instead of the compose service name) and scrapes a real gunicorn
instance of the service, after traffic that touches every endpoint the dashboard shows. Then
each query must return data: a metric renamed in service/metrics.py, a wrong label or a typo
in a query shows up here as an empty result.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from .conftest import ROOT, tool
from .procs import Process, free_port, wait_until

TOKEN = "monitoring-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROMETHEUS_DIR = ROOT / "deploy/prometheus"
DASHBOARD = ROOT / "deploy/grafana/dashboards/neuron-service.json"
# Grafana's built-in variables, as Grafana would fill them in for a short time range.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "5s", "$__range": "5m"}
COMPARISON = re.compile(r"^(?P<signal>.+?)\s*(?:>|<|>=|<=|==|!=)\s*[-+0-9.eE]+\s*$", re.S)
SCRAPES_NEEDED = 4


class Stack:
    def __init__(self, service_url: str, prometheus_url: str, gunicorn: Process):
        self.service_url = service_url
        self.prometheus_url = prometheus_url
        self.gunicorn = gunicorn

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = requests.get(
            f"{self.prometheus_url}/api/v1/query", params={"query": expr}, timeout=10
        )
        body = response.json()
        assert body["status"] == "success", f"{expr}: {body.get('error')}"
        return list(body["data"]["result"])


def traffic(url: str) -> None:
    """Requests for every series the dashboard shows: 2xx, 4xx, predictions, evaluate, retrain."""
    with requests.Session() as http:
        for i in range(20):
            rows = [[i % 2, (i + 1) % 2, 1], [1, 0, 0], [0, 1, 1]]
            assert http.post(f"{url}/predict", json={"inputs": rows}, timeout=5).ok
        targets = [1, 0, 0, 1]
        inputs = [[1, 0, 0], [0, 1, 1], [0, 0, 1], [1, 1, 0]]
        evaluate = http.post(
            f"{url}/evaluate", json={"inputs": inputs, "targets": targets}, timeout=5
        )
        assert evaluate.ok, evaluate.text
        assert http.post(f"{url}/predict", json={"inputs": [[1, 0]]}, timeout=5).status_code == 422
        assert http.get(f"{url}/model", timeout=5).ok
        # A training job that fails on its data: it counts, and promotes nothing
        bad = {"inputs": [[1, True, 0]], "targets": [1]}
        job = http.post(f"{url}/admin/jobs", headers=AUTH, json=bad, timeout=10)
        assert job.status_code == 202, job.text
        retrain = http.post(f"{url}/admin/retrain", headers=AUTH, timeout=30)
        assert retrain.ok, retrain.text
        assert http.post(f"{url}/admin/retrain", timeout=5).status_code in (401, 403)
        # Last, so the serving model has held-out figures for the validation panels: 21 rows
        # per class, enough for the default split.
        grid = [[a, b, 1] for a in range(7) for b in range(7) if a != b][:48]
        validated = {
            "inputs": grid,
            "targets": [int(a > b) for a, b, _ in grid],
            "standardize": True,
        }
        retrain = http.post(f"{url}/admin/retrain", headers=AUTH, json=validated, timeout=30)
        assert retrain.ok and retrain.json()["validation"], retrain.text
        # Rows for the new model's drift window (NEURON_DRIFT_MIN_ROWS is 1 here).
        assert http.post(f"{url}/predict", json={"inputs": grid[:5]}, timeout=5).ok


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus, _ = tool("prometheus"), tool("promtool")
    workdir = tmp_path_factory.mktemp("monitoring")
    service_port, prometheus_port = free_port(), free_port()

    env = {k: v for k, v in os.environ.items() if not k.startswith("NEURON_")}
    env.update(
        NEURON_BIND=f"127.0.0.1:{service_port}",
        NEURON_WORKERS="2",
        NEURON_MODEL_DIR=str(workdir / "model"),
        NEURON_ADMIN_TOKEN=TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics"),
        NEURON_DRIFT_MIN_ROWS="1",  # a drift score from the few rows of each round
    )
    gunicorn = Process(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py")],
        workdir / "gunicorn.log",
        env,
        ROOT,
    )

    # The shipped configuration, pointed at this gunicorn instead of the compose service.
    config = (PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8")
    assert config.count('"neuron:8000"') == 1, "expected exactly one scrape target neuron:8000"
    config = config.replace('"neuron:8000"', f'"127.0.0.1:{service_port}"')
    (workdir / "prometheus.yml").write_text(config, encoding="utf-8")
    for rules in PROMETHEUS_DIR.glob("*.yml"):
        if rules.name != "prometheus.yml":
            (workdir / rules.name).write_text(rules.read_text(encoding="utf-8"), encoding="utf-8")
    prometheus_proc = Process(
        [
            prometheus,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
            "--log.level=warn",
        ],
        workdir / "prometheus.log",
        {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir)},
        workdir,
    )
    stack = Stack(
        f"http://127.0.0.1:{service_port}", f"http://127.0.0.1:{prometheus_port}", gunicorn
    )
    try:
        gunicorn.wait_for(f"{stack.service_url}/readyz", timeout=60)
        prometheus_proc.wait_for(f"{stack.prometheus_url}/-/ready", timeout=60)
        # Traffic between scrapes, until Prometheus has seen the counters move several times:
        # rate() and increase() need two samples in their window, the panels use a 1m window.
        deadline = time.monotonic() + 90
        round_ = 0
        while True:
            traffic(stack.service_url)
            round_ += 1
            samples = stack.query("count_over_time(neuron_predictions_total[1m])")
            if samples and float(samples[0]["value"][1]) >= SCRAPES_NEEDED and round_ >= 3:
                break
            assert time.monotonic() < deadline, "Prometheus did not scrape the service in time"
            time.sleep(2.5)
        # A scrape in the middle of the last round may have caught the unvalidated model of its
        # first retrain: the panels are judged on a scrape taken after the whole round.
        finished = time.time()
        while True:
            scraped = stack.query("max(timestamp(neuron_model_version))")
            if scraped and float(scraped[0]["value"][1]) > finished:
                break
            assert time.monotonic() < deadline + 30, "Prometheus did not scrape again in time"
            time.sleep(0.5)
        yield stack
    finally:
        prometheus_proc.stop()
        gunicorn.stop()


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [
        (f"{panel['title']} [{target['refId']}]", target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def alert_names() -> list[str]:
    """The alerts in alerts.yml; their expressions are read back from Prometheus' own API."""
    text = (PROMETHEUS_DIR / "alerts.yml").read_text(encoding="utf-8")
    return re.findall(r"^\s*- alert:\s*(\S+)", text, re.M)


def loaded_rules(stack: Stack) -> dict[str, dict[str, Any]]:
    body = requests.get(f"{stack.prometheus_url}/api/v1/rules", timeout=10).json()
    return {
        rule["name"]: rule
        for group in body["data"]["groups"]
        for rule in group["rules"]
        if rule["type"] == "alerting"
    }


def substitute(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


@pytest.mark.parametrize(("panel", "expr"), dashboard_queries())
def test_every_panel_query_returns_data(stack: Stack, panel: str, expr: str) -> None:
    result = stack.query(substitute(expr))
    assert result, f"{panel}: no data for {expr}"
    values = [float(series["value"][1]) for series in result]
    assert not all(v != v for v in values), f"{panel}: only NaN for {expr}"


@pytest.mark.parametrize("alert", alert_names())
def test_every_alert_is_loaded_and_its_signal_returns_data(stack: Stack, alert: str) -> None:
    rules = loaded_rules(stack)
    assert alert in rules, f"Prometheus did not load {alert}: {sorted(rules)}"
    expr = rules[alert]["query"]
    match = COMPARISON.match(expr)
    assert match, f"{alert}: expression is not '<signal> <comparison> <number>': {expr}"
    assert stack.query(match.group("signal")), f"{alert}: no data for {match.group('signal')}"
    stack.query(expr)  # the whole expression evaluates (empty while the alert is quiet)


def test_alert_rules_evaluate_without_errors(stack: Stack) -> None:
    def evaluated() -> bool:
        rules = loaded_rules(stack).values()
        return bool(rules) and all(not r["lastEvaluation"].startswith("0001") for r in rules)

    wait_until(evaluated, timeout=40, what="every alert rule to be evaluated once", interval=1)
    broken = {name: r.get("lastError") for name, r in loaded_rules(stack).items()}
    assert all(r["health"] == "ok" for r in loaded_rules(stack).values()), broken
    assert len(loaded_rules(stack)) == len(alert_names())


def test_service_down_alert_fires_when_the_target_is_gone(stack: Stack) -> None:
    """The one alert whose condition the test can cause: stop gunicorn, `up` drops to 0."""
    stack.gunicorn.stop()
    expr = loaded_rules(stack)["NeuronServiceDown"]["query"]
    wait_until(lambda: bool(stack.query(expr)), timeout=30, what=expr, interval=1)
