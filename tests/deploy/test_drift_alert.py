"""Input drift seen by a real Prometheus, and the shipped alert judged on what it scraped.

gunicorn (two workers; with the PostgreSQL store, two replicas of two workers) runs with its
default drift settings and a model trained on known rows; Debian's prometheus scrapes it with
the shipped configuration. Rows like the training rows keep every feature below the threshold;
rows with one feature shifted by two standard deviations raise that feature, and only that
one, above it at the next scrapes. The alert's `for: 2m` is too long to wait for here, so the
shipped rule is run by `promtool test rules` on the series Prometheus scraped: the run before
the shift must not fire, the run with it must, for the shifted feature alone.
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import yaml

from ..integration.server import TOKEN, Gunicorn
from .conftest import ROOT, tool
from .procs import Process, free_port

PROMETHEUS_DIR = ROOT / "deploy/prometheus"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NAMES = ["age", "income", "ratio"]
CENTRE, SPREAD = np.array([40.0, 3000.0, 0.5]), np.array([10.0, 800.0, 0.1])
THRESHOLD = 0.25  # NEURON_DRIFT_THRESHOLD's default, which the servers run with
STEP = 5  # seconds: the shipped scrape interval
HOLD = "x36"  # promtool: the last scraped value again for 3 minutes


def draw(rng: np.random.Generator, rows: int, shift: float = 0.0) -> list[list[float]]:
    values = rng.normal(size=(rows, 3)) * SPREAD + CENTRE
    values[:, 1] += shift * SPREAD[1]
    return values.tolist()  # type: ignore[no-any-return]


class Prometheus:
    def __init__(self, workdir: Path, targets: list[str]) -> None:
        config = (PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8")
        listed = ", ".join(f'"{target}"' for target in targets)
        (workdir / "prometheus.yml").write_text(config.replace('"neuron:8000"', listed))
        (workdir / "alerts.yml").write_text((PROMETHEUS_DIR / "alerts.yml").read_text())
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = Process(
            [
                tool("prometheus"),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            workdir / "prometheus.log",
            {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir)},
            workdir,
        )
        self.process.wait_for(f"{self.url}/-/ready", timeout=60)

    def scores(self) -> dict[tuple[str, str], float]:
        """(instance, feature) -> the last scraped score."""
        result = self._get("query", {"query": "neuron_input_drift_score"})
        return {
            (s["metric"]["instance"], s["metric"]["feature"]): float(s["value"][1]) for s in result
        }

    def series(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        params = {"query": expr, "start": start, "end": end, "step": STEP}
        return self._get("query_range", params)

    def _get(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        body = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10).json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])


@pytest.fixture(params=["directory", "postgresql"])
def replicas(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[Gunicorn]]:
    if request.param == "directory":
        servers = [Gunicorn(tmp_path / "one")]
    else:
        url = request.getfixturevalue("pg_url")
        servers = [Gunicorn(tmp_path / f"r{i}", env={"NEURON_STORE_URL": url}) for i in (0, 1)]
    try:
        for server in servers:
            server.start()
        rows = np.array(draw(np.random.default_rng(1), 3_000))
        body = {
            "inputs": rows.tolist(),
            "targets": (rows[:, 0] > 40).astype(int).tolist(),
            "feature_names": NAMES,
            "standardize": True,
        }
        retrained = servers[0].post("/admin/retrain", body, headers=AUTH, timeout=60)
        assert retrained.ok, retrained.text
        version = retrained.json()["model_version"]
        deadline = time.monotonic() + 20
        while any(s.get("/readyz").json()["model_version"] != version for s in servers):
            assert time.monotonic() < deadline, "a replica did not load the retrained model"
            time.sleep(0.2)
        yield servers
    finally:
        for server in servers:
            server.stop()


def send(servers: list[Gunicorn], rng: np.random.Generator, shift: float, seconds: float) -> None:
    """Batches of 20 rows to every replica, each on a new connection, for `seconds`."""
    deadline = time.monotonic() + seconds
    for _ in range(10_000):
        for server in servers:
            assert server.post("/predict", {"inputs": draw(rng, 20, shift)}).ok
        if time.monotonic() > deadline:
            return
        time.sleep(0.02)


def traffic_until(
    prometheus: Prometheus,
    servers: list[Gunicorn],
    shift: float,
    done: Any,
    timeout: float,
) -> float:
    """Send rows until done(scores) holds on a scrape; the seconds it took."""
    rng, started = np.random.default_rng(int(shift * 10) + 5), time.monotonic()
    while time.monotonic() - started < timeout:
        send(servers, rng, shift, 1.0)
        scores = prometheus.scores()
        if done(scores):
            return time.monotonic() - started
    raise AssertionError(f"not reached in {timeout} s: {prometheus.scores()}")


def complete(scores: dict[tuple[str, str], float], instances: list[str]) -> bool:
    wanted = {(i, f) for i in instances for f in NAMES}
    return wanted <= scores.keys() and not any(math.isnan(scores[k]) for k in wanted)


def test_a_shifted_feature_crosses_the_threshold_and_fires_the_alert(
    replicas: list[Gunicorn], tmp_path: Path
) -> None:
    instances = [f"127.0.0.1:{server.port}" for server in replicas]
    prometheus = Prometheus(tmp_path, instances)
    try:
        start = time.time()
        traffic_until(prometheus, replicas, 0.0, lambda s: complete(s, instances), 60)
        send(replicas, np.random.default_rng(9), 0.0, 2 * STEP)
        calm = prometheus.scores()
        assert complete(calm, instances) and max(calm.values()) < THRESHOLD, calm
        shift_at = time.time()

        def shifted(scores: dict[tuple[str, str], float]) -> bool:
            return all(scores[(i, "income")] > THRESHOLD for i in instances)

        # Within half the drift window (60 s): the score crosses once the shifted rows are
        # about a quarter of the window's, and the next scrape shows it (10-12 s here).
        took = traffic_until(prometheus, replicas, 2.0, shifted, timeout=30)
        after = prometheus.scores()
        assert all(after[(i, f)] < THRESHOLD for i in instances for f in ("age", "ratio")), after
        send(replicas, np.random.default_rng(10), 2.0, 2 * STEP)  # so range queries see it too
        fires = promtool_case(prometheus, start, time.time(), fires=True)
        quiet = promtool_case(prometheus, start, shift_at - STEP, fires=False)
    finally:
        prometheus.process.stop()
    print(f"income above the threshold {took:.1f} s after the shift; scores {after}")
    (tmp_path / "drift.test.yml").write_text(
        # Evaluated at every scrape step (promtool's default is a minute, which would move the
        # moment the `for` ends to the next whole minute).
        yaml.safe_dump(
            {
                "rule_files": ["alerts.yml"],
                "evaluation_interval": f"{STEP}s",
                "tests": [fires, quiet],
            },
            width=10_000,
        )
    )
    tested = subprocess.run(
        [tool("promtool"), "test", "rules", "drift.test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def promtool_case(prometheus: Prometheus, start: float, end: float, fires: bool) -> dict:
    """A promtool test: the scraped series from start to end, the last value held 3 minutes."""
    found = {
        expr: prometheus.series(expr, start, end)
        for expr in ("neuron_input_drift_score", "neuron_input_drift_threshold")
    }
    grid = sorted({t for results in found.values() for r in results for t, _ in r["values"]})
    series = []
    for expr, results in found.items():
        for result in results:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(result["metric"].items()))
            at = dict(result["values"])
            values = " ".join(at.get(t, "_") for t in grid)  # "_": not scraped yet
            series.append({"series": f"{expr}{{{labels}}}", "values": values + HOLD})
    alert: dict[str, Any] = {
        "eval_time": f"{(len(grid) - 1) * STEP + 150}s",  # 2.5 minutes into the held values
        "alertname": "NeuronInputDrift",
        "exp_alerts": [],
    }
    if fires:
        last = max(float(r["values"][-1][1]) for r in found["neuron_input_drift_score"]
                   if r["metric"]["feature"] == "income")  # fmt: skip
        threshold = float(found["neuron_input_drift_threshold"][0]["values"][-1][1])
        alert["exp_alerts"] = [
            {
                "exp_labels": {"severity": "warning", "feature": "income"},
                "exp_annotations": {
                    "summary": "Inputs have drifted from the training data: feature income",
                    "description": f"Feature income scores {last / threshold:.1f}x the drift "
                    "threshold: the rows asked about no longer look like the rows the model "
                    "was trained on (GET /model/drift).",
                },
            }
        ]
    return {"interval": f"{STEP}s", "input_series": series, "alert_rule_test": [alert]}
