"""Load driver: wrk with keep-alive connections, in interleaved rounds over the configurations."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench.configs import BENCH, Config
from bench.log import log
from tests.integration.server import TICK, cpu_ticks

CONNECTIONS = 16
IDLE_SHARE = 0.15  # a worker doing less than this of the workers' CPU sat (nearly) idle


@dataclass
class Run:
    """One wrk run against one configuration."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # server CPU per request (whole process tree)
    worker_share: list[float]  # each worker's share of the workers' CPU, largest first
    errors: int


@dataclass
class Series:
    runs: list[Run] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def med(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.runs)


def wrk(config: Config, seconds: float, body_file: Path, connections: int = CONNECTIONS) -> Run:
    """wrk -c connections for ``seconds``; server CPU from /proc around it."""
    server = config.server
    workers = sorted(server.worker_pids()) if config.workers > 1 else []
    pids = server.pids()
    before = {p: cpu_ticks(p) for p in pids}
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{round(seconds)}s", "--timeout", "5s",
         "-s", str(BENCH / "post.lua"), f"{server.url}{config.path}"],
        env={**os.environ, "BENCH_BODY_FILE": str(body_file)},
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    )  # fmt: skip
    used = {p: cpu_ticks(p) - before[p] for p in pids}
    line = next(x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON "))
    s = json.loads(line.removeprefix("BENCH_JSON "))
    requests = max(s["requests"], 1)
    worker_total = sum(used.get(p, 0) for p in workers) or 1
    return Run(
        rps=s["requests"] / (s["duration_us"] / 1e6),
        p50_ms=s["p50_us"] / 1000,
        p99_ms=s["p99_us"] / 1000,
        cpu_us=sum(used.values()) / TICK * 1e6 / requests,
        worker_share=sorted((used.get(p, 0) / worker_total for p in workers), reverse=True),
        errors=sum(s[k] for k in ("connect", "read", "write", "status", "timeout")),
    )


def body_file(config: Config, workdir: Path) -> Path:
    path = workdir / f"{config.name}.body.json"
    path.write_bytes(config.body)
    return path


def interleaved(
    configs: list[Config], reps: int, seconds: float, workdir: Path
) -> dict[str, Series]:
    """A B C A B C ...; every run counts, one where a worker sat idle is noted (not rerun)."""
    results = {c.name: Series() for c in configs}
    bodies = {c.name: body_file(c, workdir) for c in configs}
    for c in configs:
        wrk(c, 1, bodies[c.name])  # warm-up: every worker imports, fills caches, opens files
    for rep in range(reps):
        for c in configs:
            run = wrk(c, seconds, bodies[c.name])
            results[c.name].runs.append(run)
            shares = "/".join(f"{x:.0%}" for x in run.worker_share)
            if run.worker_share and min(run.worker_share) < IDLE_SHARE:
                results[c.name].notes.append(f"rep {rep + 1}: a worker sat idle (CPU {shares})")
            log(
                f"{c.name:28s} rep {rep + 1}: {run.rps:8.0f} req/s  p50 {run.p50_ms:.2f} ms  "
                f"p99 {run.p99_ms:.2f} ms  cpu {run.cpu_us:.0f} us/req  workers {shares or '-'}  "
                f"errors {run.errors}"
            )
    return results
