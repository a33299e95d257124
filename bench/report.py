"""bench/results/*.md and the PNG chart, from the figures bench/run.py measured."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any


def machine(mlserver_venv: Path) -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    info = {
        "date (UTC)": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "cpu": f"{cpu}, {os.cpu_count()} logical CPUs",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    for dist in ("flask", "werkzeug", "gunicorn", "numpy", "orjson", "pydantic",
                 "prometheus-client"):  # fmt: skip
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[dist] = "?"
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    info["wrk"] = (wrk.stdout or wrk.stderr).split("Copyright")[0].strip()
    pip = mlserver_venv / "bin" / "pip"
    if pip.exists():
        out = subprocess.run(
            [str(pip), "list", "--format=freeze"], capture_output=True, text=True, check=False
        ).stdout
        wanted = ("mlserver==", "mlserver-sklearn==", "mlserver_sklearn==", "uvloop==",
                  "scikit-learn==")  # fmt: skip
        info["mlserver venv"] = ", ".join(x for x in out.split() if x.lower().startswith(wanted))
    return info


def _med(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def _fmt(t: tuple[float, float, float], digits: int = 0, unit: str = "") -> str:
    m, lo, hi = t
    return f"{m:,.{digits}f}{unit} ({lo:,.{digits}f}-{hi:,.{digits}f})"


@dataclass
class Check:
    label: str
    value: tuple[float, float, float]
    target: float
    higher_is_better: bool
    unit: str
    digits: int

    @property
    def met(self) -> bool:
        v = self.value[0]
        return v >= self.target if self.higher_is_better else v <= self.target

    def headroom(self, v: float) -> float:
        """>= 1 means the target is met; the chart's scale."""
        if self.higher_is_better:
            return v / self.target
        return self.target / v if v else float("inf")

    def row(self) -> str:
        sign = "≥" if self.higher_is_better else "≤"
        if self.met:
            verdict = "**met**"
        else:
            gap = self.headroom(self.value[0])
            verdict = f"**missed** (at {gap:.0%} of target)"
        return (
            f"| {self.label} | {_fmt(self.value, self.digits, self.unit)} | "
            f"{sign} {self.target:g}{self.unit} | {verdict} |"
        )


def _per_rep(load: dict[str, Any], a: str, b: str, attr: str) -> tuple[float, float, float]:
    """Ratio a/b per interleaved repetition (the same moment of the machine), then median."""
    ra, rb = load[a]["runs"], load[b]["runs"]
    return _med([x[attr] / y[attr] for x, y in zip(ra, rb, strict=False)])


def _over_floor(v2: dict[str, Any], kind: str) -> tuple[float, float, float]:
    """Service wall minus the bare floor's for the same bytes, per repetition, then median."""
    service, bare = v2[f"service {kind}"], v2[f"bare {kind}"]
    return _med([x["wall_ms"] - y["wall_ms"] for x, y in zip(service, bare, strict=False)])


def write(data: dict[str, Any], md: Path, png: Path, cls: str, other: str) -> None:
    load = data["load"]
    checks: list[Check] = []
    info: list[tuple[str, tuple[float, float, float], int]] = []
    if "service" in load and "flask" in load:
        checks.append(
            Check(
                "single-row req/s: service / Flask floor",
                _per_rep(load, "service", "flask", "rps"),
                0.90,
                True,
                "",
                2,
            )
        )
        checks.append(
            Check(
                "server CPU per request: service / Flask floor",
                _per_rep(load, "service", "flask", "cpu_us"),
                1.15,
                False,
                "",
                2,
            )
        )
        info.append(
            (
                "single-row req/s: service / bare WSGI floor",
                _per_rep(load, "service", "bare", "rps"),
                2,
            )
        )
        info.append(
            (
                "single-row req/s: Flask floor / bare WSGI floor",
                _per_rep(load, "flask", "bare", "rps"),
                2,
            )
        )
    if "service-nometrics" in load:
        m = _per_rep(load, "service", "service-nometrics", "rps")
        checks.append(
            Check(
                "metrics cost: 1 - req/s(metrics on) / req/s(off)",
                (1 - m[0], 1 - m[2], 1 - m[1]),
                0.10,
                False,
                "",
                3,
            )
        )
        c = _per_rep(load, "service", "service-nometrics", "cpu_us")
        info.append(("metrics cost by server CPU: CPU/req(metrics on) / CPU/req(off) - 1",
                     (c[0] - 1, c[1] - 1, c[2] - 1), 3))  # fmt: skip
    if "mlserver" in load:
        checks.append(
            Check(
                "single-row req/s: service / MLServer",
                _per_rep(load, "service", "mlserver", "rps"),
                5.0,
                True,
                "",
                1,
            )
        )
    if f"service-{other}" in load:
        info.append(
            (
                f"single-row req/s: service {other} / service {cls}",
                _per_rep(load, f"service-{other}", "service", "rps"),
                2,
            )
        )
        info.append(
            (
                f"{other}: service / Flask floor ({other})",
                _per_rep(load, f"service-{other}", f"flask-{other}", "rps"),
                2,
            )
        )
        info.append(
            (
                f"{other}: CPU per request, service / Flask floor ({other})",
                _per_rep(load, f"service-{other}", f"flask-{other}", "cpu_us"),
                2,
            )
        )
    if "service@baseline" in load:
        ref = data.get("baseline", "baseline")
        info.append(
            (f"single-row req/s: service / service at {ref}",
             _per_rep(load, "service", "service@baseline", "rps"), 2)
        )  # fmt: skip
        info.append(
            (f"server CPU per request: service / service at {ref}",
             _per_rep(load, "service", "service@baseline", "cpu_us"), 2)
        )  # fmt: skip
    b = data["batch"]["service"]
    checks.append(
        Check(
            "10,000-row batch: server time per request (median wall, client side)",
            _med([x["wall_ms"] for x in b]),
            2.0,
            False,
            " ms",
            2,
        )
    )
    checks.append(
        Check(
            "10,000-row batch: rows/s (millions)",
            _med([x["rows_per_s"] / 1e6 for x in b]),
            5.0,
            True,
            " M",
            2,
        )
    )
    v2 = data.get("v2_batch")
    if v2:
        checks.append(
            Check(
                "10,000-row FP64 binary V2 infer: wall over the bare WSGI floor (same bytes)",
                _over_floor(v2, "binary"),
                0.5,
                False,
                " ms",
                2,
            )
        )
        info.append(
            ("10,000-row FP64 JSON V2 infer: wall ms over the bare WSGI floor (same bytes)",
             _over_floor(v2, "json"), 2)
        )  # fmt: skip
    ready = data["startup_s"]["existing model"]
    checks.append(Check("ready with an existing model", _med(ready), 1.5, False, " s", 2))
    rss = data["rss_mb"].get("service", [])
    if rss:
        checks.append(
            Check("worker RSS, largest service worker", (max(rss),) * 3, 80, False, " MB", 1)
        )

    out = [f"# neuron-service benchmark{' (quick)' if data['quick'] else ''}", ""]
    out += [
        "Produced by `make bench" + ("-quick" if data["quick"] else "") + "` "
        "(bench/run.py); every figure below is from that one run on this machine. "
        f"Load: wrk, {data['reps']} interleaved repetitions of {data['seconds']:g} s per "
        "configuration, 16 connections, 2 wrk threads, all on 127.0.0.1; medians with "
        "(min-max). Ratios are taken per repetition (same moment of the machine), then the "
        "median.",
        "",
    ]
    out += ["## Machine and versions", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in data["machine"].items()]
    g = data["gunicorn"]
    out += [
        f"| gunicorn config (gunicorn.conf.py) | {g['workers']} workers, "
        f"{g['worker_class']}, {g['threads']} threads, keepalive {g['keepalive']} s |",
        "",
    ]
    out += ["## Targets", "", "| target | measured | target | verdict |", "|---|---:|---:|---|"]
    out += [c.row() for c in checks]
    out += ["", "| context ratio | measured |", "|---|---:|"]
    out += [f"| {label} | {_fmt(v, d)} |" for label, v, d in info]
    out += [
        "",
        "## Single-row `POST /predict` (and the floors' equivalent)",
        "",
        "| configuration | req/s | p50 ms | p99 ms | server CPU µs/req | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, entry in load.items():
        runs = entry["runs"]
        col = {a: _med([r[a] for r in runs]) for a in ("rps", "p50_ms", "p99_ms", "cpu_us")}
        out.append(
            f"| {name} | {_fmt(col['rps'])} | {_fmt(col['p50_ms'], 2)} | "
            f"{_fmt(col['p99_ms'], 2)} | {_fmt(col['cpu_us'])} | "
            f"{sum(r['errors'] for r in runs)} |"
        )
    notes = [f"- {name}: {n}" for name, e in load.items() for n in e["notes"]]
    if notes:
        out += ["", "Runs in which one worker sat idle (run again, at most twice):", *notes]
    names = {
        "bare": "bare WSGI floor",
        "flask": "Flask floor",
        "service": "the service",
        "service-nometrics": "the service, NEURON_METRICS_ENABLED=false",
    }
    out += [
        "",
        "Configurations without a suffix run the service's own gunicorn.conf.py "
        f"({cls}); `-{other}` ones add `-k {other}` on the command line, nothing else. "
        + "; ".join(f"`{k}` = {v}" for k, v in names.items())
        + ".",
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
    out += [
        "",
        "## 10,000-row batch (one `POST /predict`, 3 features)",
        "",
        "| server | median wall ms/request | server CPU ms/request | rows/s |",
        "|---|---:|---:|---:|",
    ]
    for name, runs in data["batch"].items():
        if runs:
            out.append(
                f"| {name} | {_fmt(_med([r['wall_ms'] for r in runs]), 2)} | "
                f"{_fmt(_med([r['cpu_ms'] for r in runs]), 2)} | "
                f"{_fmt(_med([r['rows_per_s'] for r in runs]))} |"
            )
    out += [
        "",
        "Sequential requests on one keep-alive connection for a few seconds per "
        "repetition; wall time is measured by the client and includes moving ~250 kB in "
        "and ~200 kB out over loopback.",
    ]
    if v2:
        out += [
            "",
            "## 10,000-row V2 infer (`POST /v2/models/neuron/infer`, FP64, 3 features)",
            "",
            "| server, body | median wall ms/request | server CPU ms/request |",
            "|---|---:|---:|",
        ]
        for name, runs in v2.items():
            out.append(
                f"| {name} | {_fmt(_med([r['wall_ms'] for r in runs]), 2)} | "
                f"{_fmt(_med([r['cpu_ms'] for r in runs]), 2)} |"
            )
        out += [
            "",
            "`json`: the tensor as JSON numbers, JSON output. `binary`: as tritonclient sends "
            "it by default, the tensor's 240,000 bytes after a short JSON header, binary "
            "output asked for (80,000 bytes back). The bare WSGI floor gets the very same "
            "request bytes (same gunicorn config, same run) and answers a fixed small body.",
        ]
    out += [
        "",
        "## Start-up (process start to `/readyz` 200)",
        "",
        "| case | seconds |",
        "|---|---:|",
    ]
    out += [f"| {k} | {_fmt(_med(v), 2)} |" for k, v in data["startup_s"].items()]
    out += ["", "## Memory (RSS of each worker after the runs)", "", "| server | MB |", "|---|---|"]
    out += [f"| {k} | {', '.join(f'{x:.1f}' for x in v)} |" for k, v in data["rss_mb"].items()]
    out += [
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
    out += _gap_analysis(data, checks)
    for key, title in (
        ("profile_single", "single-row requests under wrk"),
        ("profile_batch", "10,000-row requests under wrk"),
    ):
        if key in data:
            out += ["", f"## Profile: {title} (py-spy --gil, all workers, 5 s)", "", data[key]]
    md.write_text("\n".join(out) + "\n")
    chart(checks, png, data["quick"])


_SERVICE_LAYERS = ("service.", "prometheus_client", "logging")


def _layers(profile_md: str) -> dict[str, float]:
    """The layer table of a profile section back into numbers."""
    shares = {}
    for line in profile_md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 2 and cells[1].endswith("%") and not cells[0].startswith("`"):
            shares[cells[0]] = float(cells[1].rstrip("%")) / 100
    return shares


def _gap_analysis(data: dict[str, Any], checks: list[Check]) -> list[str]:
    """Where the time goes for each missed target, in this run's own numbers."""
    out = ["", "## Where the remaining gap is (this run's profiles and micro-suite)", ""]
    missed = {c.label for c in checks if not c.met}
    single = _layers(data.get("profile_single", ""))
    if single and any("Flask floor" in m or "MLServer" in m for m in missed):
        own = {k: v for k, v in single.items() if k.startswith(_SERVICE_LAYERS)}
        total = sum(own.values())
        parts = ", ".join(f"{k} {v:.0%}" for k, v in sorted(own.items(), key=lambda kv: -kv[1]))
        out.append(
            f"- Single row: the service's own layers hold {total:.0%} of the workers' GIL time "
            f"({parts}); the rest is gunicorn, werkzeug and Flask, which the Flask floor pays "
            "too. For CPU per request <= 1.15 x the floor, everything the service adds (JSON "
            "validation, the model's version check, the forward pass, an access-log line and "
            "seven Prometheus multiprocess writes) would have to fit in ~13 % of the time: a "
            "hello-world floor does none of it."
        )
    micro = data.get("micro", {})
    batch = _layers(data.get("profile_batch", ""))
    if micro and any("batch" in m for m in missed):

        def us(name: str) -> float:
            return float(micro.get(name, {}).get("min_us", float("nan")))

        forward = us("forward pass, 10,000 rows")
        encode = us("orjson encode 10,000 predictions (numpy)") / 1000
        out.append(
            "- 10,000-row batch: in-process, orjson alone decodes the body in "
            f"{us('orjson decode, 10,000 rows') / 1000:.2f} ms and body -> checked matrix takes "
            f"{us('body -> matrix, 10,000 rows: orjson.loads + PredictRequest') / 1000:.2f} ms "
            f"(best of 5), encoding the answer {encode:.2f} ms, the forward pass "
            f"{forward:.0f} us. The issue's reference machine ran that forward pass in ~25 us: "
            f"this one is ~{forward / 25:.1f}x slower, and decoding plus checking the body "
            "alone already take more than the 2 ms budget here. "
            + (
                f"Under load, validation holds {batch.get('service.schemas: validation', 0):.0%} "
                f"and JSON in/out {batch.get('service.web: JSON in/out, hooks', 0):.0%} of the "
                "workers' GIL time."
                if batch
                else ""
            )
        )
    return out if len(out) > 3 else []


def chart(checks: list[Check], png: Path, quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [c.label for c in checks]

    def scale(c: Check, v: float) -> float:  # a negative cost (noise) counts as far ahead
        return min(max(c.headroom(v) if v > 0 else 100.0, 0.01), 100.0)

    values, lows, highs = [], [], []
    for c in checks:
        points = [scale(c, v) for v in c.value]
        values.append(points[0])
        lows.append(points[0] - min(points))
        highs.append(max(points) - points[0])
    err = [lows, highs]
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(checks) + 1.5))
    colours = ["tab:green" if c.met else "tab:red" for c in checks]
    ax.barh(range(len(checks)), values, xerr=err, color=colours, capsize=3)
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(checks)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("measured / target (≥ 1 = target met; 'at most' targets inverted), log scale")
    ax.set_title("neuron-service: targets, same-run ratios" + (" (quick)" if quick else ""))
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
