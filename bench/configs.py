"""The configurations under test: which servers run, on what, loaded at which endpoint."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.server import ROOT, Gunicorn, ServerProcess, free_port

BENCH = ROOT / "bench"
MLSERVER_VENV = BENCH / ".venv-mlserver"
FASTAPI_VENV = BENCH / ".venv-fastapi"
PEER = "fastapi-peer"  # the FastAPI + uvicorn peer's configuration (issue 20)
ONE_ROW = b'{"inputs": [[1, 0, 0]]}'
V2_INFER = "/v2/models/neuron/infer"
V2_ONE_ROW = (
    b'{"inputs": [{"name": "predict", "shape": [1, 3], "datatype": "FP64", "data": [1, 0, 0]}]}'
)


@dataclass
class Config:
    """One server under test and the endpoint the load goes to."""

    name: str
    server: ServerProcess
    path: str = "/predict"
    body: bytes = ONE_ROW
    workers: int = 0  # worker processes under the master (0: not a pre-fork server)


@dataclass
class GunicornSetup:
    """The service's own gunicorn settings, as gunicorn resolves them from gunicorn.conf.py."""

    settings: dict[str, str]

    @property
    def workers(self) -> int:
        return int(self.settings.get("workers", "2"))

    @property
    def threads(self) -> int:
        return int(self.settings.get("threads", "1"))

    @property
    def cls(self) -> str:
        return family(self.settings.get("worker_class", "?"))

    @property
    def other(self) -> str:
        return other_family(self.cls)


def family(worker_class: str) -> str:
    """loop, gthread or sync, by the name of a gunicorn worker class."""
    name = worker_class.split(".")[-1].lower()
    if "loop" in name:
        return "loop"
    return "gthread" if "thread" in name else ("sync" if "sync" in name else name)


def other_family(cls: str) -> str:
    """The worker class the `-<other>` configurations compare with: the loop worker's is the
    service's own threaded one (NEURON_HTTP_WORKER=threads), gthread's is sync."""
    return {"loop": "threads", "gthread": "sync"}.get(cls, "gthread")


def gunicorn_setup() -> GunicornSetup:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEURON_")}
    env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-cfg-")
    out = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--print-config"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    shutil.rmtree(env["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    settings = {}
    for line in out.splitlines():
        m = re.match(r"^(\w+)\s+=\s+(.*)$", line)
        if m:
            settings[m.group(1)] = m.group(2).strip()
    return GunicornSetup(settings)


def gunicorn(
    name: str,
    app: str,
    workdir: Path,
    options: tuple[str, ...] = (),
    root: Path = ROOT,
    **env: str,
) -> Config:
    """``app`` under gunicorn with root's gunicorn.conf.py, plus command-line ``options``."""
    service = app.startswith("service")
    server = Gunicorn(
        workdir / name,
        workers=int(env.pop("NEURON_WORKERS", os.environ.get("NEURON_WORKERS", "2"))),
        env={"NEURON_MODEL_DIR": str(workdir / "model"), **env},
        app=app,
        options=options,
        cwd=root,
        ready_path="/readyz" if service else None,
        name=name,
    )
    return Config(name, server, workers=server.workers)


def main_set(workdir: Path, setup: GunicornSetup, quick: bool) -> list[Config]:
    """The floors and the service on the service's config; in full runs, on the other class."""
    configs = [
        gunicorn("bare", "bench.floors:bare", workdir),
        gunicorn("flask", "bench.floors:flask_app", workdir),
        gunicorn("service", "service.wsgi:app", workdir),
        gunicorn("service-nometrics", "service.wsgi:app", workdir, NEURON_METRICS_ENABLED="false"),
    ]
    if not quick:
        other = setup.other
        threads = 1 if other == "sync" else setup.threads or 4
        options: tuple[str, ...] = ("-k", other, "--threads", str(threads))
        env = {}
        if other == "threads":  # the setting, not -k: the fair gthread of service/server/
            options, env = (), {"NEURON_HTTP_WORKER": "threads"}
        configs += [
            gunicorn(f"bare-{other}", "bench.floors:bare", workdir, options, **env),
            gunicorn(f"flask-{other}", "bench.floors:flask_app", workdir, options, **env),
            gunicorn(f"service-{other}", "service.wsgi:app", workdir, options, **env),
        ]
    return configs


def drift_twins(workdir: Path) -> list[Config]:
    """Two servers alike but for drift counting, for rounds of their own: not `service`, whose
    worker trained the default model at start-up and, in one-off A/B runs (16 rounds, order
    swapped each round; not part of `make bench`), used ~5 % more CPU per request than a twin
    (whichever twin trained it was the slower one, drift on or off)."""
    return [
        gunicorn("service-drift", "service.wsgi:app", workdir),
        gunicorn("service-nodrift", "service.wsgi:app", workdir, NEURON_DRIFT_ENABLED="false"),
    ]


def hidden(workdir: Path) -> Config:
    """The service with its own model directory, for a model with a hidden layer."""
    return gunicorn(
        "service-hidden", "service.wsgi:app", workdir, NEURON_MODEL_DIR=str(workdir / "hidden")
    )


def baseline(ref: str, workdir: Path, setup: GunicornSetup) -> Config:
    """The service as it was at ``ref`` (its service/ and gunicorn.conf.py), HEAD's workers and
    threads, to load side by side with HEAD."""
    root = workdir / "baseline-tree"
    root.mkdir()
    archive = subprocess.run(
        ["git", "archive", ref, "service", "gunicorn.conf.py"],
        cwd=ROOT, capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True, timeout=60)
    config = gunicorn(
        "service@baseline", "service.wsgi:app", workdir, root=root,
        NEURON_WORKERS=str(setup.workers), NEURON_THREADS=str(setup.threads),
    )  # fmt: skip
    # An older gunicorn.conf.py may not log "Worker ready"; gunicorn's own line is in every one.
    assert isinstance(config.server, Gunicorn)
    config.server.worker_ready_line = "Booting worker with pid: {pid}"
    return config


MLSERVER_SETUP = r"""
import json, sys
from pathlib import Path
import joblib
from sklearn.linear_model import LogisticRegression
d = Path(sys.argv[1]); d.mkdir(parents=True, exist_ok=True)
X = [[0, 0, 1], [1, 1, 1], [1, 0, 1], [0, 1, 1]]; y = [0, 1, 1, 0]
joblib.dump(LogisticRegression().fit(X, y), d / "model.joblib")
(d / "model-settings.json").write_text(json.dumps({
    "name": "neuron", "implementation": "mlserver_sklearn.SKLearnModel",
    "parameters": {"uri": "./model.joblib", "version": "v1"}}))
"""


class MLServer(ServerProcess):
    """`mlserver start` on a model directory; ready when its V2 ready endpoint says so."""

    def ready(self) -> bool:
        import http.client

        conn = http.client.HTTPConnection(self.host, self.port, timeout=1)
        try:
            conn.request("GET", "/v2/models/neuron/ready")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()


def mlserver(workdir: Path) -> Config | None:
    """scikit-learn's LogisticRegression served by MLServer from its own venv; None without it."""
    binary = MLSERVER_VENV / "bin" / "mlserver"
    if not binary.exists():
        return None
    model = workdir / "mlserver-model"
    subprocess.run(
        [str(MLSERVER_VENV / "bin" / "python"), "-c", MLSERVER_SETUP, str(model)],
        check=True, timeout=120,
    )  # fmt: skip
    env: dict[str, Any] = {
        k: v for k, v in os.environ.items() if not k.startswith(("NEURON_", "PROMETHEUS"))
    }
    env.update(
        MLSERVER_HOST="127.0.0.1",
        MLSERVER_HTTP_PORT="{port}",
        MLSERVER_GRPC_PORT=str(free_port()),
        MLSERVER_METRICS_PORT=str(free_port()),
    )
    server = MLServer(
        [str(binary), "start", str(model)], workdir, env, cwd=workdir, name="mlserver"
    )
    server.grpc_port = int(env["MLSERVER_GRPC_PORT"])  # type: ignore[attr-defined]
    return Config("mlserver", server, V2_INFER, V2_ONE_ROW)


class Uvicorn(ServerProcess):
    """uvicorn with ``workers`` worker processes: ready once each has started the app; its
    workers are those processes, not the master's other child (multiprocessing's resource
    tracker)."""

    def __init__(self, workers: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workers = workers

    def _started(self) -> set[int]:
        return {int(p) for p in re.findall(r"Started server process \[(\d+)\]", self.log())}

    def ready(self) -> bool:
        if self.log().count("Application startup complete.") < self.workers:
            return False
        return len(self.worker_pids()) == self.workers and super().ready()

    def worker_pids(self) -> set[int]:
        return super().worker_pids() & self._started()


def fastapi_peer(workdir: Path, workers: int) -> Config | None:
    """bench/peer_fastapi.py under uvicorn (uvloop, httptools, no access log) from its own venv,
    with the service's worker count; None without the venv."""
    python = FASTAPI_VENV / "bin" / "python"
    if not (FASTAPI_VENV / "bin" / "uvicorn").exists():
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEURON_", "PROMETHEUS"))}
    argv = [
        str(python), "-m", "uvicorn", "--app-dir", str(BENCH), "peer_fastapi:app",
        "--host", "127.0.0.1", "--port", "{port}", "--workers", str(workers),
        "--no-access-log", "--loop", "uvloop", "--http", "httptools",
    ]  # fmt: skip
    server = Uvicorn(workers, argv, workdir, env, cwd=workdir, name=PEER)
    return Config(PEER, server, workers=workers)
