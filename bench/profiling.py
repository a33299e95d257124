"""Profiles: py-spy over every worker while wrk loads the service, grouped by layer."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.configs import Config
from bench.wrk import wrk


def profile(config: Config, seconds: float, body_file: Path, workdir: Path, tag: str) -> str:
    """py-spy over every worker (GIL holders only: CPU, not waits) while wrk loads the server."""
    pyspy = Path(sys.executable).parent / "py-spy"
    if not pyspy.exists():
        return "(py-spy not installed)"
    assert config.server.proc is not None
    raw = workdir / f"profile-{tag}.txt"
    spy = subprocess.Popen(
        [str(pyspy), "record", "-p", str(config.server.proc.pid), "--subprocesses", "--gil",
         "-d", str(int(seconds)), "-r", "250", "-f", "raw", "-o", str(raw), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    time.sleep(0.5)
    wrk(config, seconds, body_file)
    _, err = spy.communicate(timeout=seconds + 30)
    if not raw.exists():
        return f"(py-spy failed: {err.decode(errors='replace').strip()[-300:]})"
    # --nonblocking reads a running process: a name caught mid-write may not be UTF-8
    return summarise(raw.read_text(errors="replace"))


_BODY_READERS = ("arraybody.py", "jsonbody.py", "service/schemas.py", "service/oip/")
_BUCKETS: list[tuple[str, Callable[[str], bool]]] = [
    ("gunicorn: socket, HTTP parse, write", lambda f: "gunicorn" in f and "workers/" in f),
    ("werkzeug: environ, request, response", lambda f: "werkzeug/" in f),
    ("flask: dispatch, context, hooks", lambda f: "flask/" in f),
    ("service.http.web: JSON in/out, hooks", lambda f: "service/http/web.py" in f),
    (
        "service: body -> request (arraybody, jsonbody, schemas, oip)",
        lambda f: any(m in f for m in _BODY_READERS) or "pydantic" in f,
    ),
    (
        "service.serving/model/neuron",
        lambda f: any(m in f for m in ("serving.py", "current.py", "neuron.py", "service/store/")),
    ),
    ("prometheus_client: metrics", lambda f: "prometheus_client" in f or "metrics.py" in f),
    ("logging: access log", lambda f: "logging/" in f or "service/logs.py" in f),
]


def _owner(frames: list[str]) -> str:
    """The innermost frame that belongs to a layer owns the sample."""
    for frame in reversed(frames):
        hit = next((name for name, match in _BUCKETS if match(frame)), None)
        if hit:
            return hit
    return "other (stdlib, C calls)"


def summarise(collapsed: str) -> str:
    """Inclusive share per layer and the top leaf functions, as two Markdown tables."""
    total = 0
    layers: dict[str, int] = {}
    leaves: dict[str, int] = {}
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        leaves[frames[-1]] = leaves.get(frames[-1], 0) + n
        owner = _owner(frames)
        layers[owner] = layers.get(owner, 0) + n
    if not total:
        return "(no busy samples)"
    out = ["| layer (innermost frame owns the sample) | share of busy samples |", "|---|---:|"]
    for name, n in sorted(layers.items(), key=lambda kv: -kv[1]):
        out.append(f"| {name} | {n / total:.0%} |")
    out += ["", "| top leaf functions (self time) | share |", "|---|---:|"]
    for name, n in sorted(leaves.items(), key=lambda kv: -kv[1])[:12]:
        out.append(f"| `{name[:110]}` | {n / total:.1%} |")
    return "\n".join(out)
