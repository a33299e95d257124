"""Load benchmark: the service against its floors (and MLServer), as same-run ratios.

Every server runs at once on its own 127.0.0.1 port; the load runs (wrk, bounded in time) go
A B A B ... so that the machine's drift touches every configuration alike. Server CPU comes from
/proc (utime+stime of the whole process tree), which is steadier than req/s on a 2-core box.

    python bench/run.py [--quick] [--out bench/results]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
MLSERVER_VENV = BENCH / ".venv-mlserver"
TICK = os.sysconf("SC_CLK_TCK")
CONNECTIONS = 16
ONE_ROW = b'{"inputs": [[1, 0, 0]]}'
V2_ONE_ROW = (
    b'{"inputs": [{"name": "predict", "shape": [1, 3], "datatype": "FP64", "data": [1, 0, 0]}]}'
)
BATCH_ROWS = 10_000


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- processes ---------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with suppress(OSError):
            kids += [int(p) for p in (task / "children").read_text().split()]
    return kids


def tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Server:
    """One server under test, in its own process group so stop() reaches all it started."""

    name: str
    argv: list[str]
    env: dict[str, str]
    path: str  # the endpoint under load
    body: bytes
    ready_path: str | None = None  # GET this until 200; else POST ``body`` to ``path``
    workers: int = 0  # how many worker processes to expect under the master (0: do not check)
    cwd: Path = ROOT
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    started_at: float = 0.0
    ready_after: float = 0.0

    def start(self, workdir: Path, timeout: float = 60.0) -> Server:
        self.port = free_port()
        env = {k: v.replace("{port}", str(self.port)) for k, v in self.env.items()}
        argv = [a.replace("{port}", str(self.port)) for a in self.argv]
        self.log_path = workdir / f"{self.name}.log"
        with self.log_path.open("ab") as out:
            self.started_at = time.perf_counter()
            self.proc = subprocess.Popen(
                argv, cwd=self.cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.wait_ready(timeout)
        return self

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            try:
                if self.ready_path:
                    status, _ = self.request("GET", self.ready_path)
                else:
                    status, _ = self.request("POST", self.path, self.body)
                if status == 200:
                    self.ready_after = time.perf_counter() - self.started_at
                    self._wait_workers(deadline)
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise TimeoutError(f"{self.name} not ready in {timeout} s:\n{self.log_tail()}")

    def _wait_workers(self, deadline: float) -> None:
        """Every worker booted and answering: load must not start while one still imports."""
        while self.workers and time.monotonic() < deadline:
            if len(self.worker_pids()) >= self.workers:
                break
            time.sleep(0.05)
        # A few requests on fresh connections: the kernel spreads them over the workers.
        for _ in range(4 * max(self.workers, 1)):
            self.request("POST", self.path, self.body)

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        return children(self.proc.pid)

    def pids(self) -> list[int]:
        assert self.proc is not None
        return tree(self.proc.pid)

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


@contextmanager
def running(servers: list[Server], workdir: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for server in servers:
            log(f"starting {server.name}")
            try:
                started.append(server.start(workdir))
            except Exception as exc:
                log(f"{server.name} failed to start: {exc}")
                server.stop()
                raise
        yield started
    finally:
        for server in started:
            server.stop()


# -- load runs ---------------------------------------------------------------------------------


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # server CPU per request (whole process tree)
    worker_share: list[float]  # each worker's share of the workers' CPU
    errors: int


@dataclass
class Series:
    runs: list[Run] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def med(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.runs)

    def span(self, attr: str) -> tuple[float, float]:
        values = [getattr(r, attr) for r in self.runs]
        return min(values), max(values)


def wrk(server: Server, seconds: float, body_file: Path, connections: int = CONNECTIONS) -> Run:
    workers = server.worker_pids() if server.workers > 1 else []
    pids = server.pids()
    before = {p: cpu_ticks(p) for p in pids}
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{round(seconds)}s", "--timeout", "5s",
         "-s", str(BENCH / "post.lua"), f"http://127.0.0.1:{server.port}{server.path}"],
        env={**os.environ, "BENCH_BODY_FILE": str(body_file)},
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    )  # fmt: skip
    after = {p: cpu_ticks(p) for p in pids}
    line = next(x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON "))
    s = json.loads(line.removeprefix("BENCH_JSON "))
    requests = max(s["requests"], 1)
    used = {p: after[p] - before[p] for p in pids}
    worker_total = sum(used.get(p, 0) for p in workers) or 1
    return Run(
        rps=s["requests"] / (s["duration_us"] / 1e6),
        p50_ms=s["p50_us"] / 1000,
        p99_ms=s["p99_us"] / 1000,
        cpu_us=sum(used.values()) / TICK * 1e6 / requests,
        worker_share=[used.get(p, 0) / worker_total for p in workers],
        errors=sum(s[k] for k in ("connect", "read", "write", "status", "timeout")),
    )


def interleaved(
    servers: list[Server], reps: int, seconds: float, workdir: Path
) -> dict[str, Series]:
    """A B C A B C ...; a run where a worker sat idle is noted and run again (twice at most)."""
    results = {s.name: Series() for s in servers}
    bodies = {}
    for s in servers:
        bodies[s.name] = workdir / f"{s.name}.body.json"
        bodies[s.name].write_bytes(s.body)
        wrk(s, 1, bodies[s.name])  # warm-up: every worker imports, JITs caches, opens files
    for rep in range(reps):
        for s in servers:
            for attempt in range(3):
                run = wrk(s, seconds, bodies[s.name])
                idle = len(run.worker_share) > 1 and min(run.worker_share) < 0.15
                if not idle:
                    break
                shares = ", ".join(f"{x:.0%}" for x in run.worker_share)
                results[s.name].notes.append(
                    f"rep {rep + 1} try {attempt + 1}: a worker sat idle (CPU shares {shares})"
                )
            results[s.name].runs.append(run)
            log(
                f"{s.name:28s} rep {rep + 1}: {run.rps:8.0f} req/s  p50 {run.p50_ms:.2f} ms  "
                f"p99 {run.p99_ms:.2f} ms  cpu {run.cpu_us:.0f} us/req  errors {run.errors}"
            )
    return results


def batch(
    server: Server,
    body: bytes,
    seconds: float,
    max_requests: int = 2000,
    path: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, float]:
    """Sequential big requests on one keep-alive connection: wall and server CPU per request."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = headers or {"Content-Type": "application/json"}

    def one() -> float:
        t0 = time.perf_counter()
        conn.request("POST", path or server.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        elapsed = time.perf_counter() - t0
        if resp.status != 200:
            raise RuntimeError(f"{server.name}: {resp.status} {data[:200]!r}")
        return elapsed

    for _ in range(5):
        one()
    pids = server.pids()
    before = sum(cpu_ticks(p) for p in pids)
    walls: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and len(walls) < max_requests:
        walls.append(one())
    used = sum(cpu_ticks(p) for p in pids) - before
    conn.close()
    wall = statistics.median(walls)
    return {
        "wall_ms": wall * 1000,
        "cpu_ms": used / TICK * 1000 / len(walls),
        "rows_per_s": BATCH_ROWS / wall,
        "requests": len(walls),
    }


V2_INFER = "/v2/models/neuron/infer"


def v2_bodies(rows: Any) -> dict[str, tuple[bytes, dict[str, str]]]:
    """A 10,000-row FP64 V2 infer as JSON, and as tritonclient sends it by default (binary both
    ways: the tensor's bytes after the JSON header, binary output asked for)."""
    import orjson

    tensor = {"name": "input0", "shape": list(rows.shape), "datatype": "FP64"}
    as_json = orjson.dumps(
        {"inputs": [{**tensor, "data": rows.ravel()}]}, option=orjson.OPT_SERIALIZE_NUMPY
    )
    data = rows.astype("<f8").tobytes()
    header = orjson.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": len(data)}}],
            "outputs": [{"name": "output0", "parameters": {"binary_data": True}}],
        }
    )
    return {
        "json": (as_json, {"Content-Type": "application/json"}),
        "binary": (
            header + data,
            {
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(len(header)),
            },
        ),
    }


def v2_batch(
    service: Server, bare: Server, rows: Any, seconds: float
) -> dict[str, dict[str, float]]:
    """One repetition: each V2 body to the service, then the very same bytes to the bare floor."""
    out = {}
    for kind, (body, headers) in v2_bodies(rows).items():
        out[f"service {kind}"] = batch(service, body, seconds, path=V2_INFER, headers=headers)
        out[f"bare {kind}"] = batch(bare, body, seconds, path=V2_INFER, headers=headers)
    return out


# -- configurations ----------------------------------------------------------------------------


def gunicorn_config() -> dict[str, Any]:
    """The service's own gunicorn settings, as gunicorn resolves them from gunicorn.conf.py."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEURON_")}
    env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-cfg-")
    out = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--print-config"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    shutil.rmtree(env["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    conf = {}
    for line in out.splitlines():
        m = re.match(r"^(\w+)\s+=\s+(.*)$", line)
        if m:
            conf[m.group(1)] = m.group(2).strip()
    return conf


def gunicorn_server(
    name: str,
    app: str,
    workdir: Path,
    worker_class: str | None,
    threads: int,
    root: Path = ROOT,
    **env: str,
) -> Server:
    """gunicorn with root's gunicorn.conf.py; worker_class None keeps the file's own choice."""
    argv = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
    if worker_class is not None:
        argv += ["-k", worker_class, "--threads", str(threads)]
    argv.append(app)
    metrics_dir = workdir / f"metrics-{name}"
    base = {k: v for k, v in os.environ.items() if not k.startswith("NEURON_")}
    base.update(
        NEURON_BIND="127.0.0.1:{port}",
        NEURON_MODEL_DIR=str(workdir / "model"),
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        PYTHONPATH=str(root) if root == ROOT else f"{root}{os.pathsep}{ROOT}",
    )
    base.update(env)
    workers = int(base.get("NEURON_WORKERS", "2"))
    ready = "/readyz" if app.startswith("service") else None
    return Server(name, argv, base, "/predict", ONE_ROW, ready, workers=workers, cwd=root)


def baseline_tree(ref: str, workdir: Path) -> Path:
    """service/ and gunicorn.conf.py as they were at ``ref``, to load side by side with HEAD."""
    root = workdir / "baseline"
    root.mkdir()
    archive = subprocess.run(
        ["git", "archive", ref, "service", "gunicorn.conf.py"],
        cwd=ROOT, capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True, timeout=60)
    return root


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


def mlserver_server(workdir: Path) -> Server | None:
    mlserver = MLSERVER_VENV / "bin" / "mlserver"
    if not mlserver.exists():
        return None
    model = workdir / "mlserver-model"
    subprocess.run(
        [str(MLSERVER_VENV / "bin" / "python"), "-c", MLSERVER_SETUP, str(model)],
        check=True, timeout=120,
    )  # fmt: skip
    ports = {"http_port": "{port}", "grpc_port": str(free_port()), "metrics_port": str(free_port())}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEURON_", "PROMETHEUS"))}
    env.update(
        MLSERVER_HOST="127.0.0.1",
        MLSERVER_HTTP_PORT=ports["http_port"],
        MLSERVER_GRPC_PORT=ports["grpc_port"],
        MLSERVER_METRICS_PORT=ports["metrics_port"],
    )
    return Server(
        "mlserver", [str(mlserver), "start", str(model)], env, "/v2/models/neuron/infer",
        V2_ONE_ROW, "/v2/models/neuron/ready", cwd=workdir,
    )  # fmt: skip


# -- start-up and memory -----------------------------------------------------------------------


def startup(workdir: Path, reps: int) -> dict[str, list[float]]:
    """Process start to /readyz 200: with a stored model, and with an empty directory (trains)."""
    times: dict[str, list[float]] = {"existing model": [], "no model (trains)": []}
    for rep in range(reps):
        for kind in times:
            model_dir = workdir / (
                "model" if kind == "existing model" else f"empty-{rep}-{time.time_ns()}"
            )
            s = gunicorn_server(
                f"startup-{rep}", "service.wsgi:app", workdir, None, 0,
                NEURON_MODEL_DIR=str(model_dir),
            )  # fmt: skip
            s.workers = 0
            try:
                s.start(workdir)
                times[kind].append(s.ready_after)
            finally:
                s.stop()
    return times


# -- profile -----------------------------------------------------------------------------------


def profile(server: Server, seconds: float, body_file: Path, workdir: Path, tag: str) -> str:
    """py-spy over every worker (GIL holders only: CPU, not waits) while wrk loads the server."""
    pyspy = Path(sys.executable).parent / "py-spy"
    if not pyspy.exists():
        return "(py-spy not installed)"
    assert server.proc is not None
    raw = workdir / f"profile-{tag}.txt"
    spy = subprocess.Popen(
        [str(pyspy), "record", "-p", str(server.proc.pid), "--subprocesses", "--gil",
         "-d", str(int(seconds)), "-r", "250", "-f", "raw", "-o", str(raw), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    time.sleep(0.5)
    wrk(server, seconds, body_file)
    _, err = spy.communicate(timeout=seconds + 30)
    if not raw.exists():
        return f"(py-spy failed: {err.decode(errors='replace').strip()[-300:]})"
    return summarise_profile(raw.read_text())


_BUCKETS: list[tuple[str, Callable[[str], bool]]] = [
    ("gunicorn: socket, HTTP parse, write", lambda f: "gunicorn" in f and "workers/" in f),
    ("werkzeug: environ, request, response", lambda f: "werkzeug/" in f),
    ("flask: dispatch, context, hooks", lambda f: "flask/" in f),
    ("service.web: JSON in/out, hooks", lambda f: "service/web.py" in f),
    ("service.schemas: validation", lambda f: "service/schemas.py" in f or "pydantic" in f),
    (
        "service.serving/model/neuron",
        lambda f: any(m in f for m in ("serving.py", "current.py", "neuron.py", "service/store/")),
    ),
    ("prometheus_client: metrics", lambda f: "prometheus_client" in f or "metrics.py" in f),
    ("logging: access log", lambda f: "logging/" in f or "service/logs.py" in f),
]


def summarise_profile(collapsed: str) -> str:
    """Inclusive share per layer (the innermost matching layer owns a sample) and top leaves."""
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
        owner = "other (stdlib, C calls)"
        for frame in reversed(frames):
            hit = next((name for name, match in _BUCKETS if match(frame)), None)
            if hit:
                owner = hit
                break
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


# -- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs, fewer configurations")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument(
        "--baseline", metavar="GIT_REF", help="also load the service as it was at this commit"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the .md and .png from the .json"
    )
    args = parser.parse_args()
    from bench import micro, report

    name = "quick" if args.quick else "latest"
    if args.report_only:
        data = json.loads((args.out / f"{name}.json").read_text())
        cls = "gthread" if "thread" in str(data["gunicorn"]["worker_class"]).lower() else "sync"
        other = "sync" if cls == "gthread" else "gthread"
        report.write(data, args.out / f"{name}.md", args.out / f"{name}.png", cls, other)
        return 0
    reps = args.reps or 3
    seconds = args.seconds or (3 if args.quick else 6)
    if shutil.which("wrk") is None:
        log("wrk is missing: run `make bench` (it installs the Debian package) or apt-get it")
        return 2

    conf = gunicorn_config()
    cls = conf.get("worker_class", "?").split(".")[-1].lower()
    cls = "gthread" if "thread" in cls else ("sync" if "sync" in cls else cls)
    threads = int(conf.get("threads", "1"))
    other = "sync" if cls == "gthread" else "gthread"
    log(f"service's gunicorn: {conf.get('workers')} workers, {cls} x {threads} threads")

    workdir = Path(tempfile.mkdtemp(prefix="neuron-bench-"))
    data: dict[str, Any] = {"quick": args.quick, "reps": reps, "seconds": seconds}
    data["gunicorn"] = {k: conf.get(k) for k in ("workers", "worker_class", "threads",
                                                 "keepalive", "worker_connections")}  # fmt: skip
    data["machine"] = report.machine(MLSERVER_VENV)
    try:
        main_set = [
            gunicorn_server("bare", "bench.floors:bare", workdir, None, 0),
            gunicorn_server("flask", "bench.floors:flask_app", workdir, None, 0),
            gunicorn_server("service", "service.wsgi:app", workdir, None, 0),
            gunicorn_server("service-nometrics", "service.wsgi:app", workdir, None, 0,
                            NEURON_METRICS_ENABLED="false"),
        ]  # fmt: skip
        if not args.quick:
            alt_threads = 1 if other == "sync" else threads or 4
            main_set += [
                gunicorn_server(f"bare-{other}", "bench.floors:bare", workdir, other, alt_threads),
                gunicorn_server(f"flask-{other}", "bench.floors:flask_app", workdir, other,
                                alt_threads),
                gunicorn_server(f"service-{other}", "service.wsgi:app", workdir, other,
                                alt_threads),
            ]  # fmt: skip
        if args.baseline:
            data["baseline"] = args.baseline
            root = baseline_tree(args.baseline, workdir)
            main_set.append(
                gunicorn_server(  # the same workers and threads as HEAD's config, old code
                    "service@baseline",
                    "service.wsgi:app",
                    workdir,
                    None,
                    0,
                    root,
                    NEURON_WORKERS=str(conf.get("workers", 2)),
                    NEURON_THREADS=str(threads),
                )
            )
        ml = None
        if not args.quick:
            try:
                ml = mlserver_server(workdir)
                if ml is None:
                    data["mlserver_error"] = f"no venv at {MLSERVER_VENV} (make bench builds it)"
            except Exception as exc:
                data["mlserver_error"] = f"setup failed: {exc}"
        if ml is not None:
            try:
                ml.start(workdir, timeout=90)
            except Exception as exc:
                data["mlserver_error"] = f"did not start: {str(exc)[-1500:]}"
                ml.stop()
                ml = None

        with running(main_set, workdir) as servers:
            loaded = servers + ([ml] if ml else [])
            series = interleaved(loaded, reps, seconds, workdir)
            data["load"] = {
                name: {"runs": [vars(r) for r in s.runs], "notes": s.notes}
                for name, s in series.items()
            }
            service = next(s for s in servers if s.name == "service")
            data["rss_mb"] = {
                s.name: [round(rss_mb(p), 1) for p in s.worker_pids()] for s in servers
            }
            if ml:
                data["rss_mb"]["mlserver (whole tree)"] = [round(sum(rss_mb(p) for p in ml.pids()),
                                                                 1)]  # fmt: skip

            import numpy as np
            import orjson

            rows = np.random.default_rng(0).random((BATCH_ROWS, 3)).round(6)
            big = orjson.dumps({"inputs": rows}, option=orjson.OPT_SERIALIZE_NUMPY)
            v2_big = orjson.dumps({"inputs": [{"name": "predict", "shape": [BATCH_ROWS, 3],
                                               "datatype": "FP64", "data": rows.ravel()}]},
                                  option=orjson.OPT_SERIALIZE_NUMPY)  # fmt: skip
            bseconds = 2 if args.quick else 4
            data["batch"] = {"service": [], "service@baseline": [], "mlserver": []}
            base = next((s for s in servers if s.name == "service@baseline"), None)
            for rep in range(reps):
                data["batch"]["service"].append(batch(service, big, bseconds))
                if base:
                    data["batch"]["service@baseline"].append(batch(base, big, bseconds))
                if ml:
                    data["batch"]["mlserver"].append(batch(ml, v2_big, bseconds))
                log(f"batch rep {rep + 1}: service {data['batch']['service'][-1]}")
            bare = next(s for s in servers if s.name == "bare")
            data["v2_batch"] = {}
            for rep in range(reps):
                for key, result in v2_batch(service, bare, rows, bseconds).items():
                    data["v2_batch"].setdefault(key, []).append(result)
                log(
                    "V2 batch rep {}: binary {:.2f} ms (floor {:.2f}), JSON {:.2f} ms (floor "
                    "{:.2f})".format(
                        rep + 1,
                        *(data["v2_batch"][k][-1]["wall_ms"]
                          for k in ("service binary", "bare binary", "service json", "bare json")),
                    )
                )  # fmt: skip

            if not args.quick:
                one = workdir / "service.body.json"
                data["profile_single"] = profile(service, 5, one, workdir, "single")
                bigf = workdir / "batch.body.json"
                bigf.write_bytes(big)
                data["profile_batch"] = profile(service, 5, bigf, workdir, "batch")
        if ml:
            ml.stop()
        log("start-up times")
        data["startup_s"] = startup(workdir, reps)
        log("micro-suite")
        data["micro"] = micro.run(quick=args.quick)
        data["gc"] = micro.gc_cost()
    finally:
        for s in locals().get("main_set", []):
            s.stop()
        if locals().get("ml"):
            ml.stop()  # type: ignore[union-attr]

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(data, indent=1, default=str))
    report.write(data, args.out / f"{name}.md", args.out / f"{name}.png", cls, other)
    shutil.rmtree(workdir, ignore_errors=True)
    log(f"wrote {args.out / (name + '.md')}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
