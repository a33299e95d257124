"""A real haproxy (Debian's) in front of test servers, running deploy/haproxy/haproxy.cfg.

The file is the one the replicas compose stack uses; only its `bind` and `server-template`
lines are rewritten to 127.0.0.1 ports, and its Docker DNS resolver section dropped.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.integration.server import ROOT, free_port

CONFIG = ROOT / "deploy/haproxy/haproxy.cfg"


def haproxy_bin() -> str:
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if found is None:
        reason = "haproxy is not installed (make pytest installs Debian's haproxy)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def render(port: int, backends: list[str], stats_port: int) -> str:
    """deploy/haproxy/haproxy.cfg, bound to 127.0.0.1:port, balancing over backends; plus a
    stats page on stats_port, from which the test reads each server's health."""
    text = CONFIG.read_text(encoding="utf-8")
    text = re.sub(r"^resolvers docker\n(?:[ \t]+.*\n)+", "", text, flags=re.M)
    text = re.sub(r"^(\s+)bind \*:8000$", rf"\1bind 127.0.0.1:{port}", text, flags=re.M)
    servers = "\n".join(f"    server neuron{i} {address}" for i, address in enumerate(backends))
    text, count = re.subn(r"^\s+server-template .*$", servers, text, flags=re.M)
    assert count == 1, "deploy/haproxy/haproxy.cfg lost its server-template line"
    return f"{text}\nlisten stats\n    bind 127.0.0.1:{stats_port}\n    stats enable\n    stats uri /stats\n"


class HAProxy:
    """start() waits until every backend is up behind it; stop() ends it by its pid."""

    def __init__(self, workdir: Path, backends: list[str]) -> None:
        self.workdir = workdir
        self.backends = backends
        self.port = self.stats_port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> HAProxy:
        self.port, self.stats_port = free_port(), free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "haproxy.cfg"
        config.write_text(render(self.port, self.backends, self.stats_port), encoding="utf-8")
        log = (self.workdir / "haproxy.log").open("ab")
        self.proc = subprocess.Popen(
            [haproxy_bin(), "-db", "-f", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited:\n{self.log()}")
            try:
                if set(self.server_status().values()) == {"UP"}:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"haproxy not serving every backend in {timeout}s:\n{self.log()}")

    def server_status(self) -> dict[str, str]:
        """haproxy's own view of each backend server: UP, DOWN, ..."""
        response = requests.get(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=2)
        lines = response.text.lstrip("# ").splitlines()
        header = lines[0].split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        return {
            row["svname"]: row["status"]
            for row in rows
            if row["pxname"] == "replicas" and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def log(self) -> str:
        path = self.workdir / "haproxy.log"
        return path.read_text(errors="replace") if path.exists() else ""
