"""Load benchmark: the service against its floors and its peers (a hand-written FastAPI app,
MLServer), as same-run ratios.

Every server runs at once on its own 127.0.0.1 port; the load runs (wrk, bounded in time) go
A B A B ... so that the machine's drift touches every configuration alike. Server CPU comes from
/proc (utime+stime of the whole process tree), which is steadier than req/s on a 2-core box.

    python bench/run.py [--quick] [--reps N] [--seconds S] [--baseline GIT_REF] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # `python bench/run.py`: the repository root, not bench/, on the path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench import (
    batch,
    configs,
    grpcbench,
    machine,
    micro,
    profiling,
    report,
    retrain_load,
    startup,
    targets,
    training,
)
from bench.configs import BENCH, Config, GunicornSetup
from bench.log import log
from bench.wrk import Series, body_file, interleaved, wrk
from tests.integration.server import rss_mb


def parse_args() -> argparse.Namespace:
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
    return parser.parse_args()


@contextmanager
def running(servers: list[Config]) -> Iterator[list[Config]]:
    """Start every configuration (in order), stop them all afterwards, whatever happens."""
    started: list[Config] = []
    try:
        for config in servers:
            log(f"starting {config.name}")
            started.append(config)
            config.server.start(timeout=90)
        yield started
    finally:
        for config in started:
            config.server.stop()


def start_peer(
    key: str, make: Callable[[], Config | None], venv: Path, data: dict[str, Any]
) -> Config | None:
    """A server from a venv of its own (MLServer, the FastAPI peer) if the venv exists and it
    starts; otherwise the reason goes into ``data[key + "_error"]``."""
    try:
        config = make()
    except Exception as exc:
        data[f"{key}_error"] = f"setup failed: {exc}"
        return None
    if config is None:
        data[f"{key}_error"] = f"no venv at {venv} (make bench builds it)"
        return None
    try:
        log(f"starting {config.name}")
        config.server.start(timeout=90)
    except Exception as exc:
        data[f"{key}_error"] = f"did not start: {str(exc)[-1500:]}"
        config.server.stop()
        return None
    return config


def measure_batches(
    named: dict[str, Config], reps: int, seconds: float, data: dict[str, Any]
) -> None:
    """10,000-row /predict (service, floor, baseline, MLServer) and V2 infer, per repetition."""
    matrix = batch.rows()
    big = batch.predict_body(matrix)
    service, bare = named["service"], named["bare"]
    base, ml = named.get("service@baseline"), named.get("mlserver")
    data["batch"] = {"service": [], "bare": [], "service@baseline": [], "mlserver": []}
    data["v2_batch"] = {}
    hidden = named.get("service-hidden")
    if hidden:
        batch.hidden_model(hidden, matrix)
        data["hidden_batch"] = {}
    data["gzip_batch"] = {}
    for rep in range(reps):
        for key, result in batch.gzip_over_plain(service, big, seconds).items():
            data["gzip_batch"].setdefault(key, []).append(result)
        if hidden:
            for key, result in batch.hidden_over_plain(service, hidden, big, seconds).items():
                data["hidden_batch"].setdefault(key, []).append(result)
        pair = batch.json_over_floor(service, bare, big, seconds)
        data["batch"]["service"].append(pair["service"])
        data["batch"]["bare"].append(pair["bare"])
        if base:
            data["batch"]["service@baseline"].append(batch.batch(base, big, seconds))
        if ml:
            data["batch"]["mlserver"].append(batch.batch(ml, batch.mlserver_body(matrix), seconds))
        for key, result in batch.v2_over_floor(service, bare, matrix, seconds).items():
            data["v2_batch"].setdefault(key, []).append(result)
        for key, result in grpcbench.grpc_beside_rest(service, seconds, ml).items():
            data.setdefault("grpc", {}).setdefault(key, []).append(result)
        v2 = {k: v[-1]["wall_ms"] for k, v in data["v2_batch"].items()}
        log(
            f"batch rep {rep + 1}: JSON {pair['service']['wall_ms']:.2f} ms (floor "
            f"{pair['bare']['wall_ms']:.2f}); V2 binary {v2['service binary']:.2f} ms (floor "
            f"{v2['bare binary']:.2f}), V2 JSON {v2['service json']:.2f} ms (floor "
            f"{v2['bare json']:.2f}); gRPC/REST "
            + ", ".join(f"{n} rows {r:.2f}" for n, r in grpcbench.grpc_ratios(data["grpc"]).items())
        )


def measure_drift(
    twins: list[Config], rounds: int, seconds: float, workdir: Path, data: dict[str, Any]
) -> None:
    """Drift counting on against off: single rows in rounds of their own (the order swapped
    every round), then the 10,000-row body."""
    paired = {twin.name: Series() for twin in twins}
    bodies = {twin.name: body_file(twin, workdir) for twin in twins}
    for twin in twins:
        wrk(twin, 1, bodies[twin.name])
    for round_ in range(rounds):
        for twin in twins if round_ % 2 == 0 else twins[::-1]:
            paired[twin.name].runs.append(wrk(twin, 3, bodies[twin.name]))
    data["drift_load"] = {name: {"runs": [vars(r) for r in s.runs]} for name, s in paired.items()}
    big = batch.predict_body(batch.rows())
    data["drift_batch"] = {}
    for _ in range(rounds // 2):
        for key, result in batch.drift_on_off(*twins, big, seconds).items():
            data["drift_batch"].setdefault(key, []).append(result)
    log(f"drift: {rounds} single-row rounds and {rounds // 2} batch rounds on the twins")


def measure(args: argparse.Namespace, setup: GunicornSetup, workdir: Path) -> dict[str, Any]:
    """Every measurement of one run, into the dictionary the report is written from."""
    reps = args.reps or 3
    seconds = args.seconds or (3 if args.quick else 6)
    data: dict[str, Any] = {"quick": args.quick, "reps": reps, "seconds": seconds}
    keys = ("workers", "worker_class", "threads", "keepalive", "worker_connections")
    data["gunicorn"] = {k: setup.settings.get(k) for k in keys}
    data["machine"] = machine.describe(configs.MLSERVER_VENV, configs.FASTAPI_VENV)
    servers = configs.main_set(workdir, setup, args.quick)
    hidden = configs.hidden(workdir)  # batch only: not in the load runs
    twins = configs.drift_twins(workdir)  # their own rounds and batches, after the main load
    if args.baseline:
        data["baseline"] = args.baseline
        servers.append(configs.baseline(args.baseline, workdir, setup))
    ml = None
    if not args.quick:
        ml = start_peer("mlserver", lambda: configs.mlserver(workdir), configs.MLSERVER_VENV, data)
    workers = next(c.workers for c in servers if c.name == "service")
    peer = start_peer(
        "fastapi", lambda: configs.fastapi_peer(workdir, workers), configs.FASTAPI_VENV, data
    )
    try:
        with running([*servers, hidden]) as everything:
            started = [c for c in everything if c is not hidden]
            loaded = started + [c for c in (peer, ml) if c]
            named = {c.name: c for c in [*loaded, hidden]}
            series = interleaved(loaded, reps, seconds, workdir)
            data["load"] = {
                name: {"runs": [vars(r) for r in s.runs], "notes": s.notes}
                for name, s in series.items()
            }
            summary = targets.peer_summary(data["load"])
            if summary:
                data["fastapi_peer"] = summary
            data["rss_mb"] = {
                c.name: [round(rss_mb(p), 1) for p in sorted(c.server.worker_pids())]
                for c in started
            }
            if peer:
                data["rss_mb"][peer.name] = [
                    round(rss_mb(p), 1) for p in sorted(peer.server.worker_pids())
                ]
            if ml:
                whole = sum(rss_mb(p) for p in ml.server.pids())
                data["rss_mb"]["mlserver (whole tree)"] = [round(whole, 1)]
            measure_batches(named, reps, 2 if args.quick else 4, data)
            # Started now, with the model stored: neither twin trains it at start-up, which
            # left that server ~5 % slower than its twin for the whole run (one-off A/B runs).
            with running(twins):
                measure_drift(twins, 4 if args.quick else 10, 2 if args.quick else 4, workdir, data)
            if not args.quick:
                service = named["service"]
                one = body_file(service, workdir)
                data["profile_single"] = profiling.profile(service, 5, one, workdir, "single")
                big = workdir / "batch.body.json"
                big.write_bytes(batch.predict_body(batch.rows()))
                data["profile_batch"] = profiling.profile(service, 5, big, workdir, "batch")
    finally:
        for config in (peer, ml):
            if config:
                config.server.stop()
    if not args.quick:  # servers of its own, one per worker class, after the others stopped
        log("predictions during back-to-back retrains, on each HTTP worker")
        data["retrain_load"] = retrain_load.run(workdir, reps, seconds)
    log("start-up times")
    data["startup_s"] = startup.startup(workdir, reps)
    log("micro-suite")
    data["micro"] = micro.run(quick=args.quick)
    data["gc"] = micro.gc_cost()
    # Quick runs too (~30 s): every server is stopped by now, and each training run is a
    # process of its own, so the peak memory judged is that process's alone.
    log("training on big data (10^5 and 10^6 rows)")
    data["training"] = training.run(workdir, log=log)
    return data


def main() -> int:
    args = parse_args()
    name = "quick" if args.quick else "latest"
    paths = (args.out / f"{name}.md", args.out / f"{name}.png")
    if args.report_only:
        report.write(json.loads((args.out / f"{name}.json").read_text()), *paths)
        return 0
    if shutil.which("wrk") is None:
        log("wrk is missing: run `make bench` (it installs the Debian package) or apt-get it")
        return 2
    setup = configs.gunicorn_setup()
    log(f"service's gunicorn: {setup.workers} workers, {setup.cls} x {setup.threads} threads")
    workdir = Path(tempfile.mkdtemp(prefix="neuron-bench-"))
    data = measure(args, setup, workdir)
    data["gunicorn"]["family"], data["gunicorn"]["other"] = setup.cls, setup.other
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(data, indent=1, default=str))
    report.write(data, *paths)
    shutil.rmtree(workdir, ignore_errors=True)
    log(f"wrote {paths[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
