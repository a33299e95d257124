"""Single-row predictions while 10,000-row retrains run back to back, on each HTTP worker.

Issue 20's target: beside retrains, predictions keep their p99 within 2.5 x of their p99
alone, lose none, and keep at least 0.6 x their throughput. For each worker class
(NEURON_HTTP_WORKER) one server of two workers; wrk runs alone and during retrains in
alternate rounds (alone, during, alone, during, ...), and each round's ratio is against the
alone round before it. `python -m bench.retrain_load [--reps N --seconds S]` prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests

from bench.configs import Config, gunicorn
from bench.wrk import body_file, wrk
from tests.integration.server import TOKEN

WORKERS = ("loop", "threads")
ROWS = 10_000


def retrain_body() -> bytes:
    """10,000 rows of three features, a learnable rule, the default iterations."""
    rng = np.random.default_rng(7)
    inputs = rng.random((ROWS, 3))
    targets = (inputs[:, 0] > inputs[:, 1]).astype(float)
    return json.dumps({"inputs": inputs.tolist(), "targets": targets.tolist()}).encode()


class Retrains:
    """Posts retrains back to back from a thread until stopped; counts what came back."""

    def __init__(self, url: str, body: bytes) -> None:
        self._url, self._body = url, body
        self._stop = threading.Event()
        self.done, self.failed = 0, 0
        self.seconds: list[float] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Retrains:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        with requests.Session() as session:
            while not self._stop.is_set():
                started = time.monotonic()
                answer = session.post(
                    f"{self._url}/admin/retrain", data=self._body, headers=headers, timeout=60
                )
                self.seconds.append(time.monotonic() - started)
                if answer.status_code == 200:
                    self.done += 1
                else:
                    self.failed += 1


def measure(config: Config, reps: int, seconds: float, workdir: Path) -> dict[str, Any]:
    body, load = retrain_body(), body_file(config, workdir)
    rounds = []
    for _ in range(reps):
        alone = wrk(config, seconds, load)
        with Retrains(config.server.url, body) as retrains:
            time.sleep(0.5)  # the first retrain is under way before the load starts
            during = wrk(config, seconds, load)
        rounds.append((alone, during, retrains))
    return {
        "p99_alone_ms": statistics.median(a.p99_ms for a, _, _ in rounds),
        "p99_during_ms": statistics.median(d.p99_ms for _, d, _ in rounds),
        "p99_ratio": statistics.median(d.p99_ms / a.p99_ms for a, d, _ in rounds),
        "rps_alone": statistics.median(a.rps for a, _, _ in rounds),
        "rps_during": statistics.median(d.rps for _, d, _ in rounds),
        "rps_ratio": statistics.median(d.rps / a.rps for a, d, _ in rounds),
        "lost": sum(a.errors + d.errors for a, d, _ in rounds),
        "retrains": sum(r.done for _, _, r in rounds),
        "retrains_failed": sum(r.failed for _, _, r in rounds),
        "retrain_s": statistics.median([s for _, _, r in rounds for s in r.seconds] or [0.0]),
    }


def run(workdir: Path, reps: int = 3, seconds: float = 5.0) -> dict[str, dict[str, Any]]:
    results = {}
    for worker in WORKERS:
        config = gunicorn(
            f"retrain-{worker}", "service.wsgi:app", workdir, NEURON_HTTP_WORKER=worker
        )
        config.server.start()
        try:
            results[worker] = measure(config, reps, seconds, workdir)
        finally:
            config.server.stop()
    return results


def table(results: dict[str, dict[str, Any]]) -> str:
    rows = [
        "| worker | p99 alone → during retrains (ratio; target ≤ 2.5) "
        "| req/s alone → during (ratio; target ≥ 0.6) | lost | retrains (failed) |",
        "|---|---|---|---|---|",
    ]
    for worker, r in results.items():
        rows.append(
            f"| {worker} | {r['p99_alone_ms']:.1f} → {r['p99_during_ms']:.1f} ms "
            f"({r['p99_ratio']:.2f}) | {r['rps_alone']:,.0f} → {r['rps_during']:,.0f} "
            f"({r['rps_ratio']:.2f}) | {r['lost']} | {r['retrains']} ({r['retrains_failed']}) |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-retrain-") as workdir:
        print(table(run(Path(workdir), args.reps, args.seconds)))


if __name__ == "__main__":
    main()
