"""A real gunicorn running the service on a free 127.0.0.1 port, for integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import requests

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "integration-token-0123456789"
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gunicorn:
    """Start with start(), stop with stop(); the log goes to a file the test can read."""

    def __init__(
        self,
        workdir: Path,
        workers: int = 2,
        env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        prefix: Sequence[str] = (),
    ):
        """host: the address to bind and call; prefix: a command to run gunicorn under
        (e.g. `ip netns exec NAME`, which execs it: the pid stays gunicorn's master's)."""
        self.host = host
        self.prefix = list(prefix)
        self.workdir = workdir
        self.model_dir = workdir / "model"
        self.metrics_dir = workdir / "metrics"
        self.log_path = workdir / "gunicorn.log"
        self.workers = workers
        self.extra_env = dict(env or {})
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEURON_")}
        env.update(
            NEURON_BIND=f"{self.host}:{self.port}",
            NEURON_WORKERS=str(self.workers),
            NEURON_MODEL_DIR=str(self.model_dir),
            NEURON_ADMIN_TOKEN=TOKEN,
            PROMETHEUS_MULTIPROC_DIR=str(self.metrics_dir),
        )
        env.update(self.extra_env)
        return env

    def start(self) -> Gunicorn:
        self.launch()
        self.wait_ready()
        return self

    def launch(self) -> Gunicorn:
        """Start without waiting (several servers starting together); then wait_ready()."""
        self.port = free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py")],
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches the workers too
        )
        log.close()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited early:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.05)
        else:
            raise TimeoutError(f"gunicorn not ready in {timeout}s:\n{self.log()}")
        log = ""
        # One worker answering is not all of them: a straggler still loading the app reads
        # the store after the test has moved on (and a restart wipes what it counted).
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            log = self.log()
            if len(pids) == self.workers and all(f"Worker ready (pid: {p})" in log for p in pids):
                return
            time.sleep(0.05)
        raise TimeoutError(f"gunicorn's workers not all loaded in {timeout}s:\n{log}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def restart(self) -> Gunicorn:
        self.stop()
        return self.start()

    def worker_pids(self) -> set[int]:
        """Live worker processes: the master's children."""
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        return {int(pid) for pid in children.split()}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON lines of the service's own logs (gunicorn's plain lines are skipped)."""
        lines = []
        for line in self.log().split("\n"):  # not splitlines(): logged paths may hold U+2028
            if line.startswith("{"):
                lines.append(orjson.loads(line))
        return lines

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        """A POST on a new connection, so that successive calls may reach different workers."""
        kwargs.setdefault("timeout", 10)
        if body is not None:
            kwargs.setdefault("json", body)
        return requests.post(f"{self.url}{path}", **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return requests.get(f"{self.url}{path}", **kwargs)
