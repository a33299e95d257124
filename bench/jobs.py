"""A training job of real size through a running gunicorn, with predictions alongside it.

The issue's case: 400,000 x 10 raw features as CSV, `standardize` and every other default,
posted to a server of two workers while one client sends single-row predictions one after
another. Reports the job's wall time, its held-out accuracy beside scikit-learn's
(StandardScaler + LogisticRegression on the same rows), the training process's peak memory,
and the predictions' p50/p99 before and during the job. `python -m bench.jobs [--rows N]`
prints a Markdown table (docs/training.md quotes it).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import requests

from tests.integration.jobs import AUTH, as_csv, raw_table
from tests.integration.server import Gunicorn

HELD_OUT = 50_000


def _latencies(url: str, rows: np.ndarray, stop: Callable[[], bool]) -> list[float]:
    """Single-row predictions on one keep-alive connection, in slices of 0.5 s with stop() (a
    GET on a connection of its own) between them, until it says so: the same with and without
    the job, so that only the job differs."""
    out: list[float] = []
    with requests.Session() as session:
        while len(out) < 100_000:
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                body = {"inputs": [rows[len(out) % len(rows)].tolist()]}
                started = time.perf_counter()
                session.post(f"{url}/predict", json=body, timeout=5).raise_for_status()
                out.append(time.perf_counter() - started)
            if stop():
                return out
    return out


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(rows: int, workdir: Path) -> dict[str, Any]:
    inputs, targets = raw_table(rows + HELD_OUT, 10, seed=1)
    train_x, train_y = inputs[:rows], targets[:rows]
    test_x, test_y = inputs[rows:], targets[rows:]
    body = as_csv(train_x, train_y)
    server = Gunicorn(workdir / "server").start()
    try:
        csv_headers = {**AUTH, "Content-Type": "text/csv"}
        sample = as_csv(train_x[:2_000], train_y[:2_000])
        requests.post(f"{server.url}/admin/retrain", data=sample, params={"standardize": "true"},
                      headers=csv_headers, timeout=60).raise_for_status()  # fmt: skip
        slices = iter(range(10))

        def five_seconds() -> bool:
            requests.get(f"{server.url}/admin/jobs", headers=AUTH, timeout=10)  # as below
            return next(slices, None) is None

        alone = _latencies(server.url, test_x, five_seconds)
        started = time.monotonic()
        posted = requests.post(f"{server.url}/admin/jobs", data=body, headers=csv_headers,
                               params={"standardize": "true"}, timeout=120)  # fmt: skip
        posted.raise_for_status()
        location = f"{server.url}{posted.headers['Location']}"
        job = posted.json()

        def ended() -> bool:
            nonlocal job
            job = requests.get(location, headers=AUTH, timeout=10).json()
            return job["state"] not in ("queued", "running") or time.monotonic() > started + 600

        during = _latencies(server.url, test_x, ended)
        seconds = time.monotonic() - started
        (trainer,) = server.trainer_pids()
        peak = _peak_mb(trainer)
        predictions = np.concatenate([
            requests.post(f"{server.url}/predict", json={"inputs": test_x[i : i + 10_000].tolist()},
                          timeout=60).json()["predictions"]
            for i in range(0, len(test_x), 10_000)
        ])  # fmt: skip
    finally:
        server.stop()
    return {
        "rows": rows,
        "state": job["state"],
        "seconds": seconds,
        "body_mb": len(body) / 1e6,
        "accuracy": float(np.mean((predictions >= 0.5) == (test_y == 1))),
        "sklearn": _sklearn(train_x, train_y, test_x, test_y),
        "peak_mb": peak,
        "alone": (np.percentile(alone, 50), np.percentile(alone, 99)),
        "during": (np.percentile(during, 50), np.percentile(during, 99), max(during)),
        "predictions": len(during),
    }


def _sklearn(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray
) -> float:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
    from sklearn.pipeline import make_pipeline  # type: ignore[import-untyped]
    from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(train_x, train_y)
    return float(model.score(test_x, test_y))


def table(r: dict[str, Any]) -> str:
    """The figures as Markdown rows."""
    ms = 1000.0
    alone, during = r["alone"], r["during"]
    rows = [
        (
            f"job: {r['rows']:,} x 10 raw CSV ({r['body_mb']:.0f} MB), `standardize`, "
            f"from POST to `{r['state']}`",
            f"{r['seconds']:.1f} s",
        ),
        (
            f"held-out accuracy ({HELD_OUT:,} rows): the job's model; scikit-learn's",
            f"{r['accuracy']:.4f}; {r['sklearn']:.4f}",
        ),
        ("training process peak memory (VmHWM)", f"{r['peak_mb']:.0f} MB"),
        (
            "single-row `/predict` p50 / p99, no job",
            f"{alone[0] * ms:.2f} / {alone[1] * ms:.2f} ms",
        ),
        (
            f"the same during the job ({r['predictions']:,} requests); the slowest",
            f"{during[0] * ms:.2f} / {during[1] * ms:.2f} ms; {during[2] * ms:.1f} ms",
        ),
        ("p99 during the job ÷ p99 without", f"{during[1] / alone[1]:.2f}"),
    ]
    return "\n".join(["| | measured |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=400_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as workdir:
        print(table(run(args.rows, Path(workdir))))


if __name__ == "__main__":
    main()
