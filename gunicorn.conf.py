"""gunicorn configuration, driven by the same NEURON_* settings as the app."""

import gc
import os
import shutil
import tempfile
from pathlib import Path

# One BLAS thread per worker: the workers are the parallelism; set before numpy loads anywhere.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from service.server import grpcside, malloc  # noqa: E402
from service.server.fairworker import ConnectionBoard  # noqa: E402

# Fails here, in the master, with pydantic's message if a setting is wrong (e.g. a short token).
from service.settings import Settings  # noqa: E402

_settings = Settings()
malloc.tune()  # in the master, before any fork: every worker inherits it
_shm = Path("/dev/shm")  # noqa: S108 -- only for heartbeat and metrics files, see below
_fast_tmp = str(_shm) if _shm.is_dir() and os.access(_shm, os.W_OK) else None

# client_python reads this when it is first imported, which is in the workers, after fork.
_metrics_dir_given = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(
    prefix="neuron-metrics-", dir=_fast_tmp
)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir

wsgi_app = "service.wsgi:app"
bind = [_settings.bind]
workers = _settings.workers
# threads: gthread whose workers share out a burst of keep-alive connections
# (service/server/fairworker.py): on stock gthread one worker could take a whole burst.
# loop: an event loop per worker (service/server/loopworker.py).
worker_class = {
    "threads": "service.server.fairworker.FairThreadWorker",
    "loop": "service.server.loopworker.LoopWorker",
}[_settings.http_worker]
threads = _settings.threads
timeout = _settings.worker_timeout_seconds
graceful_timeout = 30
keepalive = 5
worker_tmp_dir = _fast_tmp  # heartbeat files: a disk-backed /tmp can stall workers
control_socket_disable = True  # a fixed default path collides between several servers
accesslog = None  # the app writes its own JSON access log with the request id
errorlog = "-"
loglevel = _settings.log_level
# Per address: gunicorn names the dirty arbiter's pid file after it, and a master starting
# kills the process an old file names. One name for two servers would kill the other's.
proc_name = f"neuron-service-{_settings.bind}"

if _settings.jobs_enabled:  # the training process (service/server/trainer.py)
    dirty_apps = ["service.server.trainer:Trainer"]
    dirty_workers = 1
    dirty_timeout = 60  # its heartbeat: a thread trains, the worker's own loop still beats
    dirty_graceful_timeout = 15  # a job in training goes back to the queue within this

# Made here, in the master, before any fork: every worker maps the same memory.
_board = ConnectionBoard()
_grpc_claim = None  # the master's hold on NEURON_GRPC_BIND, for as long as it runs


def on_starting(server):  # type: ignore[no-untyped-def]
    """Wipe the metrics directory: files of an earlier run would be summed into this one.

    And claim the gRPC address for this server's workers (service/server/grpcside.py).
    """
    global _grpc_claim
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    os.makedirs(_metrics_dir, exist_ok=True)
    _grpc_claim = grpcside.claim_port(_settings)


def pre_fork(server, worker):  # type: ignore[no-untyped-def]
    """Give the new worker a slot of the connection board no live sibling holds."""
    _board.assign(worker, server.WORKERS.values())


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    """Keep the garbage collector off the app's own objects and out of big requests.

    A 10,000-row /predict builds 10,000 row lists. With CPython's default thresholds that
    ran ~13 young collections per request and, every ~10 requests, a full one over the
    whole app heap: 7.6 ms per request on average (gc.callbacks, bench/README.md). Frozen,
    the app's objects (loaded before this hook) are never traversed again; a young
    generation of 50,000 lets one request's rows come and go between collections.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 10, 10)
    # After the freeze: grpcio's own objects are made for this worker alone.
    grpcside.start(worker)
    # gunicorn says "Booting worker" before the app loads; this says the app is loaded.
    worker.log.info("Worker ready (pid: %s)", worker.pid)


def worker_int(worker):  # type: ignore[no-untyped-def]
    """SIGINT or SIGQUIT: the worker quits at once, and so does its gRPC server."""
    grpcside.stop(worker, None)


def worker_exit(server, worker):  # type: ignore[no-untyped-def]
    """The worker's HTTP loop is over: let gRPC calls in flight finish, then stop it."""
    grpcside.stop(worker, server.cfg.graceful_timeout)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    """Drop the dead worker's live gauges; its counters stay, as client_python documents."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
    _board.leave(getattr(worker, "board_slot", None))


def on_exit(server):  # type: ignore[no-untyped-def]
    """Remove the metrics directory this config made up; a given one is the operator's."""
    if not _metrics_dir_given:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
