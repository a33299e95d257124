"""Servers on a free 127.0.0.1 port in their own process group: the tests' gunicorn, the bench's.

One implementation for both (bench/ imports this module; it does not import pytest):
``ServerProcess`` starts any server command and stops its whole process group; ``Gunicorn`` is
gunicorn with the project's gunicorn.conf.py, ready when every worker has loaded its app.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import orjson
import requests

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "integration-token-0123456789"
START_TIMEOUT = 30.0
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (all its threads'), from /proc."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with suppress(OSError):
            kids += [int(p) for p in (task / "children").read_text().split()]
    return kids


def tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` in clock ticks (TICK per second); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


_DIRTY_ARBITER = re.compile(r"Spawned dirty arbiter \(pid: (\d+)\)")


class ServerProcess:
    """Any server command, "{port}" in its argv and env replaced by a free port at launch.

    launch() starts it in its own session (so stop() reaches every process it started) with its
    output appended to ``log_path``; wait_ready() polls ready() until it holds.
    """

    def __init__(
        self,
        argv: Sequence[str],
        workdir: Path,
        env: Mapping[str, str],
        cwd: Path = ROOT,
        host: str = "127.0.0.1",
        name: str = "server",
    ):
        self.argv, self.base_env, self.cwd = list(argv), dict(env), cwd
        self.workdir, self.host, self.name = workdir, host, name
        self.log_path = workdir / f"{name}.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.ready_after = 0.0  # seconds from launch to ready

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return {k: v.replace("{port}", str(self.port)) for k, v in self.base_env.items()}

    def command(self) -> list[str]:
        return [a.replace("{port}", str(self.port)) for a in self.argv]

    def launch(self) -> ServerProcess:
        """Start without waiting (several servers starting together); then wait_ready()."""
        self.port = free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.started_at = time.perf_counter()
            self.proc = subprocess.Popen(
                self.command(), cwd=self.cwd, env=self.env(), stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return self

    def start(self, timeout: float = START_TIMEOUT) -> ServerProcess:
        self.launch()
        self.wait_ready(timeout)
        return self

    def ready(self) -> bool:
        """Whether the server answers; subclasses say what answering means."""
        with suppress(OSError), socket.create_connection((self.host, self.port), timeout=1):
            return True
        return False

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            if self.ready():
                self.ready_after = time.perf_counter() - self.started_at
                return
            time.sleep(0.02)
        raise TimeoutError(f"{self.name} not ready in {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def worker_pids(self) -> set[int]:
        """Live worker processes: the master's children."""
        assert self.proc is not None
        return set(children(self.proc.pid))

    def pids(self) -> list[int]:
        """The whole process tree."""
        assert self.proc is not None
        return tree(self.proc.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


class Gunicorn(ServerProcess):
    """gunicorn with the project's gunicorn.conf.py; the log goes to a file the test can read."""

    # What gunicorn.conf.py's post_worker_init logs once a worker has loaded the app.
    worker_ready_line = "Worker ready (pid: {pid})"

    def __init__(
        self,
        workdir: Path,
        workers: int = 2,
        env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        prefix: Sequence[str] = (),
        app: str | None = None,
        options: Sequence[str] = (),
        cwd: Path = ROOT,
        ready_path: str | None = "/readyz",
        name: str = "gunicorn",
    ):
        """host: the address to bind and call; prefix: a command to run gunicorn under
        (e.g. `ip netns exec NAME`, which execs it: the pid stays gunicorn's master's);
        app: a WSGI app other than the config's; options: more gunicorn command-line options
        (e.g. `-k sync`); cwd: the tree whose gunicorn.conf.py and service/ run;
        ready_path: GET it until 200 (None: the port accepting is enough)."""
        argv = [*prefix, sys.executable, "-m", "gunicorn", "-c", str(cwd / "gunicorn.conf.py")]
        argv += [*options, *([app] if app else [])]
        super().__init__(argv, workdir, {}, cwd, host, name)
        self.prefix = list(prefix)
        self.model_dir = workdir / "model"
        self.metrics_dir = workdir / "metrics"
        self.workers = workers
        self.extra_env = dict(env or {})
        self.ready_path = ready_path
        self.grpc_port = 0  # its gRPC port (NEURON_GRPC_BIND), a free one picked at launch

    @property
    def grpc_target(self) -> str:
        """host:port of its gRPC service, as grpc.insecure_channel and tritonclient take it."""
        return f"{self.host}:{self.grpc_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEURON_")}
        while self.grpc_port in (0, self.port):
            self.grpc_port = free_port()
        env.update(
            NEURON_BIND=f"{self.host}:{self.port}",
            NEURON_WORKERS=str(self.workers),
            NEURON_MODEL_DIR=str(self.model_dir),
            NEURON_ADMIN_TOKEN=TOKEN,
            NEURON_GRPC_BIND=self.grpc_target,
            PROMETHEUS_MULTIPROC_DIR=str(self.metrics_dir),
        )
        if self.cwd != ROOT:  # another tree's service/ first, then this one's (bench.floors)
            env["PYTHONPATH"] = f"{self.cwd}{os.pathsep}{ROOT}"
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = START_TIMEOUT) -> Gunicorn:
        super().start(timeout)
        return self

    def launch(self) -> Gunicorn:
        self.grpc_port = 0  # env() picks a new one beside the new HTTP port
        super().launch()
        return self

    def ready(self) -> bool:
        if self.ready_path is None:
            return super().ready()
        try:
            return requests.get(f"{self.url}{self.ready_path}", timeout=1).status_code == 200
        except (requests.ConnectionError, requests.Timeout):
            return False

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        super().wait_ready(timeout)
        log = ""
        # One worker answering is not all of them: a straggler still loading the app reads
        # the store after the test has moved on (and a restart wipes what it counted).
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            log = self.log()
            if len(pids) == self.workers and all(
                self.worker_ready_line.format(pid=p) in log for p in pids
            ):
                return
            time.sleep(0.05)
        raise TimeoutError(f"gunicorn's workers not all loaded in {timeout}s:\n{log}")

    def restart(self) -> Gunicorn:
        self.stop()
        return self.start()

    def worker_pids(self) -> set[int]:
        """The HTTP workers: the master's children but the dirty arbiter (training jobs)."""
        return super().worker_pids() - set(self.dirty_arbiters())

    def dirty_arbiters(self) -> list[int]:
        """Pids of the dirty arbiters the master said it spawned, oldest first."""
        return [int(pid) for pid in _DIRTY_ARBITER.findall(self.log())]

    def trainer_pids(self) -> set[int]:
        """The training processes: the live dirty arbiters' children."""
        live = set(super().worker_pids())
        return {
            kid for arbiter in self.dirty_arbiters() if arbiter in live for kid in children(arbiter)
        }

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON lines of the service's own logs (gunicorn's plain lines are skipped)."""
        lines = []
        # not splitlines(): logged paths may hold U+2028; the last piece may be a line still
        # being written (or the empty string after the final newline)
        for line in self.log().split("\n")[:-1]:
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


@contextmanager
def replicas(envs: Sequence[Mapping[str, str]], workdir: Path) -> Iterator[list[Gunicorn]]:
    """One gunicorn per env (e.g. the same NEURON_STORE_URL), started together, stopped after."""
    servers = [Gunicorn(workdir / f"r{i}", env=env) for i, env in enumerate(envs)]
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()
