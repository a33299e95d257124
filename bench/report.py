"""bench/results/*.md and the PNG chart, from the figures bench/run.py measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import grpcbench, retrain_load, training
from bench.chart import chart
from bench.configs import PEER, family, other_family
from bench.targets import Spread, Target, context, fastapi_peer, per_rep, targets

CONFIG_NAMES = {
    "bare": "bare WSGI floor",
    "flask": "Flask floor",
    "service": "the service",
    "service-nometrics": "the service, NEURON_METRICS_ENABLED=false",
    "service-drift": "a fresh twin of the service, for the drift rounds",
    "service-nodrift": "the twin with NEURON_DRIFT_ENABLED=false",
    PEER: "the FastAPI + uvicorn peer (bench/peer_fastapi.py; its own section below)",
}


def _classes(data: dict[str, Any]) -> tuple[str, str]:
    """The service's worker class family and the one the `-<other>` rows use."""
    g = data["gunicorn"]
    cls = g.get("family") or family(str(g["worker_class"]))
    return cls, g.get("other") or other_family(cls)


def header(data: dict[str, Any]) -> list[str]:
    quick = data["quick"]
    out = [f"# neuron-service benchmark{' (quick)' if quick else ''}", ""]
    out += [
        "Produced by `make bench" + ("-quick" if quick else "") + "` "
        "(bench/run.py); every figure below is from that one run on this machine. "
        f"Load: wrk, {data['reps']} interleaved repetitions of {data['seconds']:g} s per "
        "configuration, 16 connections, 2 wrk threads, all on 127.0.0.1; medians with "
        "(min-max). Ratios are taken per repetition (same moment of the machine), then the "
        "median.",
        "",
        "## Machine and versions",
        "",
        "| | |",
        "|---|---|",
    ]
    out += [f"| {k} | {v} |" for k, v in data["machine"].items()]
    g = data["gunicorn"]
    out += [
        f"| gunicorn config (gunicorn.conf.py) | {g['workers']} workers, "
        f"{g['worker_class']}, {g['threads']} threads, keepalive {g['keepalive']} s |",
        "",
    ]
    return out


def _verdict(t: Target) -> str:
    if t.met is None:
        return "reported"
    if t.met:
        return "**met**"
    return f"**missed** (at {t.headroom(t.measured.median):.0%} of target)"


def targets_table(rows: list[Target], data: dict[str, Any]) -> list[str]:
    out = ["## Targets", "", "| target | measured | target | verdict |", "|---|---:|---:|---|"]
    for t in rows:
        goal = "-" if t.target is None else f"{'≥' if t.at_least else '≤'} {t.target:g}{t.unit}"
        out.append(f"| {t.name} | {t.measured.fmt(t.digits, t.unit)} | {goal} | {_verdict(t)} |")
    cls, other = _classes(data)
    out += ["", "| context ratio | measured |", "|---|---:|"]
    out += [f"| {c.name} | {c.measured.fmt(c.digits)} |" for c in context(data, cls, other)]
    return out


def _shares(runs: list[dict[str, Any]]) -> str:
    """Each run's worker CPU shares, largest first: `51/49, 50/50, ...`."""
    per_run = ["/".join(f"{x:.0%}".rstrip("%") for x in r.get("worker_share", [])) for r in runs]
    return ", ".join(s for s in per_run if s) or "-"


def single_row_table(data: dict[str, Any]) -> list[str]:
    load = data["load"]
    out = [
        "",
        "## Single-row `POST /predict` (and the floors' equivalent)",
        "",
        "| configuration | req/s | p50 ms | p99 ms | server CPU µs/req | worker CPU share % "
        "per run | errors |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for name, entry in load.items():
        runs = entry["runs"]
        col = {a: Spread.of(r[a] for r in runs) for a in ("rps", "p50_ms", "p99_ms", "cpu_us")}
        out.append(
            f"| {name} | {col['rps'].fmt()} | {col['p50_ms'].fmt(2)} | {col['p99_ms'].fmt(2)} | "
            f"{col['cpu_us'].fmt()} | {_shares(runs)} | {sum(r['errors'] for r in runs)} |"
        )
    notes = [f"- {name}: {n}" for name, e in load.items() for n in e["notes"]]
    if notes:
        out += ["", "Runs in which one worker did under 15 % of the workers' CPU:", *notes]
    cls, other = _classes(data)
    how = f"`-k {other}` on the command line"
    if other == "threads":
        how = "`NEURON_HTTP_WORKER=threads`"
    out += [
        "",
        "Configurations without a suffix run the service's own gunicorn.conf.py "
        f"({cls}); `-{other}` ones add {how}, nothing else. "
        + "; ".join(f"`{k}` = {v}" for k, v in CONFIG_NAMES.items())
        + ". Worker CPU share: each worker's part of the workers' CPU (utime+stime from /proc) "
        "over the run; a worker left without keep-alive connections shows as ~0.",
    ]
    if data.get("mlserver_error"):
        out += ["", f"**MLServer could not be measured**: {data['mlserver_error']}"]
    elif "mlserver" in load:
        out += [
            "",
            "`mlserver` = MLServer (separate venv, default settings) serving "
            "scikit-learn's LogisticRegression fitted on the classic 4-row set, V2 REST "
            "`/v2/models/neuron/infer`.",
        ]
    return out


def peer_table(data: dict[str, Any]) -> list[str]:
    """Issue 20: the service beside the FastAPI app a user would write instead, same rounds."""
    head = ["", "## Single-row `/predict`: the service against the FastAPI peer (issue 20)", ""]
    if data.get("fastapi_error"):
        error = data["fastapi_error"]
        return [*head, "**The FastAPI peer could not be measured**:", "", "```", error, "```"]
    load = data["load"]
    if PEER not in load or "service" not in load:
        return []
    rps, cpu = fastapi_peer(load)
    out = [
        *head,
        "| figure | the service | FastAPI peer | service / peer | issue 20's target | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    rows: tuple[tuple[str, str, int, Target | None], ...] = (
        ("rps", "req/s", 0, rps),
        ("cpu_us", "server CPU µs/req", 0, cpu),
        ("p99_ms", "p99 latency ms", 2, None),
    )
    for attr, label, digits, t in rows:
        own, peer = (Spread.of(r[attr] for r in load[n]["runs"]) for n in ("service", PEER))
        goal = "-" if t is None else f"{'≥' if t.at_least else '≤'} {t.target:g}"
        out.append(
            f"| {label} | {own.fmt(digits)} | {peer.fmt(digits)} | "
            f"{per_rep(load, 'service', PEER, attr).fmt(2)} | {goal} | "
            f"{'reported' if t is None else _verdict(t)} |"
        )
    return [
        *out,
        "",
        f"`{PEER}`: bench/peer_fastapi.py, the app a user would write by hand: a pydantic model "
        "(rows of 3 finite floats, at least one row), the article's neuron trained at start-up "
        "(the service's default model, the same predictions), numpy's forward pass, "
        "`async def`; served by uvicorn from its own venv (bench/.venv-fastapi) with the "
        "service's worker count, uvloop and httptools, `--no-access-log`. It runs in the same "
        "interleaved rounds as the service, with the same wrk settings and body; its server CPU "
        "is its whole process tree's, as for the others. Ratios are per round, then the median.",
    ]


def drift_rounds_table(data: dict[str, Any]) -> list[str]:
    paired = data.get("drift_load")
    if not paired:
        return []
    out = [
        "",
        "## Single-row `/predict`, input drift counting on and off (paired rounds)",
        "",
        "| configuration | req/s | server CPU µs/req |",
        "|---|---:|---:|",
    ]
    for name, entry in paired.items():
        runs = entry["runs"]
        rps, cpu = Spread.of(r["rps"] for r in runs), Spread.of(r["cpu_us"] for r in runs)
        out.append(f"| {name} | {rps.fmt()} | {cpu.fmt()} |")
    return [
        *out,
        "",
        f"{len(runs)} rounds of 3 s on two twins of the service, alike but for "
        "`NEURON_DRIFT_ENABLED`, started once the model is stored (the server that trains it "
        "at start-up ran slower than its twin all run long, in a one-off A/B) and given the same "
        "requests, "
        "the order swapped every round; the drift target's ratio is taken per round.",
    ]


def _wall_cpu_rows(results: dict[str, list[dict[str, float]]], rows_per_s: bool) -> list[str]:
    out = []
    for name, runs in results.items():
        if not runs:
            continue
        row = (
            f"| {name} | {Spread.of(r['wall_ms'] for r in runs).fmt(2)} | "
            f"{Spread.of(r['cpu_ms'] for r in runs).fmt(2)} |"
        )
        if rows_per_s:
            row += f" {Spread.of(r['rows_per_s'] for r in runs).fmt()} |"
        out.append(row)
    return out


def batch_tables(data: dict[str, Any]) -> list[str]:
    out = [
        "",
        "## 10,000-row batch (one `POST /predict`, 3 features)",
        "",
        "| server | median wall ms/request | server CPU ms/request | rows/s |",
        "|---|---:|---:|---:|",
        *_wall_cpu_rows(data["batch"], rows_per_s=True),
        "",
        "Sequential requests on one keep-alive connection for a few seconds per "
        "repetition; wall time is measured by the client and includes moving ~250 kB in "
        "and ~200 kB out over loopback. `bare` is the bare WSGI floor given the very same "
        "request bytes, right after the service in each repetition (it reads the body and "
        "answers a fixed small body); `mlserver` gets the rows as V2 JSON.",
    ]
    packed = data.get("gzip_batch")
    if packed:
        out += [
            "",
            "## 10,000-row `/predict` answer, plain and gzipped",
            "",
            "| answer | median wall ms/request | server CPU ms/request | bytes on the wire |",
            "|---|---:|---:|---:|",
            *(
                f"| {name} | {Spread.of(r['wall_ms'] for r in runs).fmt(2)} | "
                f"{Spread.of(r['cpu_ms'] for r in runs).fmt(2)} | {runs[-1]['answer_bytes']:,} |"
                for name, runs in packed.items()
                if runs
            ),
            "",
            "The same 10,000 x 3 body to the service, one after the other in each repetition: "
            "without Accept-Encoding, then with `Accept-Encoding: gzip` (level 1, "
            "service/http/encoding.py). The wall time includes the client reading the answer "
            "(over loopback, where bytes cost little; on a real network the smaller answer "
            "gains its transfer time).",
        ]
    drift = data.get("drift_batch")
    if drift:
        out += [
            "",
            "## 10,000-row `/predict`, input drift counting on and off",
            "",
            "| drift counting | median wall ms/request | server CPU ms/request | rows/s |",
            "|---|---:|---:|---:|",
            *_wall_cpu_rows(drift, rows_per_s=True),
            "",
            "The same 10,000 x 3 body to the twins `service-drift` and `service-nodrift` "
            "(`NEURON_DRIFT_ENABLED=false`), one after the other in each repetition: counting "
            "the rows (a 256-row sample of them) in the model's training bins against not.",
        ]
    hidden = data.get("hidden_batch")
    if hidden:
        out += [
            "",
            "## 10,000-row `/predict` through a hidden layer",
            "",
            "| model | median wall ms/request | server CPU ms/request | rows/s |",
            "|---|---:|---:|---:|",
            *_wall_cpu_rows(hidden, rows_per_s=True),
            "",
            "The same 10,000 x 3 body, one repetition after the other on the service's config: "
            "the plain neuron (the article's model) against a model retrained with "
            '`"standardize": true, "hidden": {"units": 64}` (its own server and model '
            "directory): standardize, tanh of a 3 x 64 layer, then the neuron with its bias.",
        ]
    v2 = data.get("v2_batch")
    if v2:
        out += [
            "",
            "## 10,000-row V2 infer (`POST /v2/models/neuron/infer`, FP64, 3 features)",
            "",
            "| server, body | median wall ms/request | server CPU ms/request |",
            "|---|---:|---:|",
            *_wall_cpu_rows(v2, rows_per_s=False),
            "",
            "`json`: the tensor as JSON numbers, JSON output. `binary`: as tritonclient sends "
            "it by default, the tensor's 240,000 bytes after a short JSON header, binary "
            "output asked for (80,000 bytes back). The bare WSGI floor gets the very same "
            "request bytes (same gunicorn config, same run) and answers a fixed small body.",
        ]
    return out


def footprint_tables(data: dict[str, Any]) -> list[str]:
    out = [
        "",
        "## Start-up (process start to `/readyz` 200)",
        "",
        "| case | seconds |",
        "|---|---:|",
    ]
    out += [f"| {k} | {Spread.of(v).fmt(2)} |" for k, v in data["startup_s"].items()]
    out += ["", "## Memory (RSS of each worker after the runs)", "", "| server | MB |", "|---|---|"]
    out += [f"| {k} | {', '.join(f'{x:.1f}' for x in v)} |" for k, v in data["rss_mb"].items()]
    return out


def micro_tables(data: dict[str, Any]) -> list[str]:
    out = [
        "",
        "## Micro-suite (in-process, timeit; median of 5 repeats)",
        "",
        "| case | median µs | min µs |",
        "|---|---:|---:|",
    ]
    out += [
        f"| {k} | {v['median_us']:,.1f} | {v['min_us']:,.1f} |" for k, v in data["micro"].items()
    ]
    if "gc" in data:
        out += [
            "",
            "## Garbage collector per 10,000-row request (gc.callbacks, in-process)",
            "",
            "| setting | collections/request | GC ms/request |",
            "|---|---:|---:|",
        ]
        out += [f"| {k} | {v['collections']:.2f} | {v['gc_ms']:.3f} |"
                for k, v in data["gc"].items()]  # fmt: skip
    return out


_SERVICE_LAYERS = ("service.", "prometheus_client", "logging")


def _layers(profile_md: str) -> dict[str, float]:
    """The layer table of a profile section back into numbers."""
    shares = {}
    for line in profile_md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 2 and cells[1].endswith("%") and not cells[0].startswith("`"):
            shares[cells[0]] = float(cells[1].rstrip("%")) / 100
    return shares


def _single_row_gap(single: dict[str, float]) -> str:
    own = {k: v for k, v in single.items() if k.startswith(_SERVICE_LAYERS)}
    parts = ", ".join(f"{k} {v:.0%}" for k, v in sorted(own.items(), key=lambda kv: -kv[1]))
    return (
        f"- Single row: the service's own layers hold {sum(own.values()):.0%} of the workers' "
        f"GIL time ({parts}); the rest is gunicorn, werkzeug and Flask, which the Flask floor "
        "pays too. For CPU per request <= 1.15 x the floor, everything the service adds (JSON "
        "validation, the model's version check, the forward pass, an access-log line and the "
        "Prometheus multiprocess writes) would have to fit in ~13 % of the time: a "
        "hello-world floor does none of it."
    )


def _batch_gap(micro: dict[str, Any], batch: dict[str, float]) -> str:
    def us(name: str) -> float:
        return float(micro.get(name, {}).get("min_us", float("nan")))

    forward = us("forward pass, 10,000 rows")
    fast = us("body -> PredictRequest, 10,000 rows: fast path (arraybody, simdjson)")
    general = us("body -> PredictRequest, 10,000 rows: general (jsonbody.decode + pydantic)")
    text = (
        f"- 10,000-row batch: in-process, the body -> checked matrix fast path takes "
        f"{fast / 1000:.2f} ms (the general reader: {general / 1000:.2f} ms; orjson alone "
        f"{us('orjson decode, 10,000 rows') / 1000:.2f} ms), encoding the answer "
        f"{us('orjson encode 10,000 predictions (numpy)') / 1000:.2f} ms, the forward pass "
        f"{forward:.0f} us (best of 5)."
    )
    if batch:
        reading = batch.get("service: body -> request (arraybody, jsonbody, schemas, oip)", 0)
        text += (
            f" Under load, reading the body into a request holds {reading:.0%}, "
            f"werkzeug {batch.get('werkzeug: environ, request, response', 0):.0%} and the "
            f"hooks and JSON out {batch.get('service.http.web: JSON in/out, hooks', 0):.0%} of the "
            "workers' GIL time."
        )
    return text


def gap_analysis(data: dict[str, Any], rows: list[Target]) -> list[str]:
    """Where the time goes for each missed target, in this run's own numbers."""
    missed = [t.name for t in rows if t.met is False]
    out = []
    single = _layers(data.get("profile_single", ""))
    if single and any("Flask floor" in m or "MLServer" in m for m in missed):
        out.append(_single_row_gap(single))
    if data.get("micro") and any("10,000-row JSON" in m for m in missed):
        out.append(_batch_gap(data["micro"], _layers(data.get("profile_batch", ""))))
    if not out:
        return []
    return ["", "## Where the remaining gap is (this run's profiles and micro-suite)", "", *out]


def profiles(data: dict[str, Any]) -> list[str]:
    out = []
    for key, title in (
        ("profile_single", "single-row requests under wrk"),
        ("profile_batch", "10,000-row requests under wrk"),
    ):
        if key in data:
            out += ["", f"## Profile: {title} (py-spy --gil, all workers, 5 s)", "", data[key]]
    return out


def retrain_table(data: dict[str, Any]) -> list[str]:
    """Issue 20's retrain-load target, per HTTP worker (bench/retrain_load.py)."""
    results = data.get("retrain_load")
    if not results:
        return []
    return [
        "",
        "## Predictions during back-to-back retrains (issue 20)",
        "",
        "Single-row /predict (wrk, 16 connections) alone and while one client posts 10,000-row "
        "retrains back to back, in alternate rounds on one server per worker class; each "
        "ratio is against the round alone before it, then the median.",
        "",
        retrain_load.table(results),
    ]


def write(data: dict[str, Any], md: Path, png: Path) -> None:
    """The results file and its chart."""
    rows = targets(data)
    lines = [
        *header(data),
        *targets_table(rows, data),
        *single_row_table(data),
        *peer_table(data),
        *drift_rounds_table(data),
        *batch_tables(data),
        *grpcbench.table(data),
        *footprint_tables(data),
        *training.table(data),
        *retrain_table(data),
        *micro_tables(data),
        *gap_analysis(data, rows),
        *profiles(data),
    ]
    md.write_text("\n".join(lines) + "\n")
    chart(rows, png, data["quick"])
