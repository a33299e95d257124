"""Training on big data: a training job's rows per second and the peak memory of its process.

A seeded CSV of N rows x 10 raw features on very different scales (10^-2 to 10^3, with
offsets) and a 0/1 column "y" drawn from a logistic model of the standardized features (a
Bernoulli draw: learnable, not separable). For each N a child process (OPENBLAS_NUM_THREADS=1)
does what a training job does: `read_csv` of the file opened in binary mode, a RetrainRequest
with `standardize` (the defaults otherwise: mini-batches of 1,024 above 10,000 rows, a quarter
held out, refit on every row), `ModelServer.retrain` into a temp model directory. It reports
its parse and train+save seconds, the answer's accuracies and its peak RSS (VmHWM), also per
phase (the high-water mark is reset between phases through /proc/self/clear_refs).
scikit-learn's StandardScaler + LogisticRegression fits the same rows, scored on the same
held-out rows, in a child of its own.

Run by `make bench` (bench/run.py) or alone: ``python -m bench.training`` prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = (100_000, 1_000_000)
FEATURES = 10
TARGET = "y"
SEED = 12
_WRITE_ROWS = 50_000  # rows formatted at once while writing the CSV
_CHILD_TIMEOUT_S = 1800


# -- the data ---------------------------------------------------------------------------------


def dataset(rows: int, seed: int = SEED) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(raw features, 0/1 labels): y ~ Bernoulli(sigmoid(z @ w + b)), z standard normal, and
    the raw feature j = z_j * scale_j + offset_j with scale_j = 10^U(-2, 3)."""
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-2, 3, FEATURES)
    offset = rng.normal(0, 3, FEATURES) * scale
    weights = rng.normal(0, 1, FEATURES)
    z = rng.standard_normal((rows, FEATURES))
    chance = 1 / (1 + np.exp(-(z @ weights + 0.3)))
    labels = (rng.random(rows) < chance).astype(np.int8)
    return z * scale + offset, labels


def write_csv(path: Path, features: np.ndarray[Any, Any], labels: np.ndarray[Any, Any]) -> None:
    """A header row (x0..x9, y), then the rows: 7 significant digits, the label as 0 or 1."""
    header = ",".join([*(f"x{j}" for j in range(features.shape[1])), TARGET])
    fmt = ["%.7g"] * features.shape[1] + ["%d"]
    with path.open("w", encoding="ascii", newline="") as out:
        out.write(header + "\n")
        for start in range(0, len(labels), _WRITE_ROWS):
            block = np.column_stack(
                [features[start : start + _WRITE_ROWS], labels[start : start + _WRITE_ROWS]]
            )
            np.savetxt(out, block, fmt=fmt, delimiter=",")


def write_files(workdir: Path, sizes: tuple[int, ...]) -> dict[int, Path]:
    """One CSV per size, each the head of the same seeded draw."""
    features, labels = dataset(max(sizes))
    files = {}
    for rows in sizes:
        path = workdir / f"training-{rows}x{FEATURES}.csv"
        write_csv(path, features[:rows], labels[:rows])
        files[rows] = path
    return files


# -- the child processes ----------------------------------------------------------------------


def _status_mb(field: str) -> float:
    status = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else float("nan")


class _Memory:
    """This process's peak RSS per phase: VmHWM read, then reset (clear_refs 5)."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self.resettable = True

    def mark(self, phase: str) -> None:
        self.phases[phase] = round(_status_mb("VmHWM"), 1)
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.resettable = False

    def peak(self) -> float:
        return max(self.phases.values())


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def _read(csv: Path, rows: int) -> Any:
    from service.model.tabular import read_csv

    with csv.open("rb") as stream:
        return read_csv(stream, TARGET, rows, FEATURES)


def child_service(csv: Path, rows: int, model_dir: Path) -> dict[str, Any]:
    """What a training job does with the file; the figures as a dict."""
    from service.schemas import RetrainRequest
    from service.serving import ModelServer
    from service.settings import Settings

    memory = _Memory()
    memory.mark("imports")
    table, parse_s = _timed(lambda: _read(csv, rows))
    memory.mark("parse")
    settings = Settings(
        model_dir=model_dir,
        max_train_rows=rows,
        max_body_bytes=2**40,
        max_training_work=10**18,
        training_budget_seconds=3000,
        worker_timeout_seconds=3600,
    )
    # As POST /admin/retrain builds it from a CSV: the arrays go in as they are (the
    # constructor's validators take JSON lists).
    request = RetrainRequest(standardize=True).model_copy(
        update={
            "inputs": table.inputs,
            "targets": table.targets,
            "feature_names": table.feature_names,
        }
    )
    answer, train_s = _timed(lambda: ModelServer(settings).retrain(request))
    memory.mark("train")
    return {
        "rows": len(table.targets),
        "parse_s": parse_s,
        "train_s": train_s,
        "iterations": answer.iterations,
        "promoted": answer.promoted,
        "accuracy": answer.accuracy,
        "validation_accuracy": None if answer.validation is None else answer.validation.accuracy,
        "peak_mb": memory.peak(),
        "phase_peak_mb": memory.phases if memory.resettable else {},
    }


def child_sklearn(csv: Path, rows: int) -> dict[str, Any]:
    """StandardScaler + LogisticRegression (defaults) on the service's own training rows,
    scored on its held-out rows (the same seeded split as the retrain's defaults)."""
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
    from sklearn.pipeline import make_pipeline  # type: ignore[import-untyped]
    from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

    from service.model.validation import default_fraction, stratified_split
    from service.schemas import RetrainRequest

    memory = _Memory()
    table, parse_s = _timed(lambda: _read(csv, rows))
    fraction, seed = default_fraction(table.targets), RetrainRequest().seed
    fit_rows, held = stratified_split(table.targets, fraction, seed)
    x, y = table.inputs, table.targets[:, 0]
    model = make_pipeline(StandardScaler(), LogisticRegression())
    _, fit_s = _timed(lambda: model.fit(x[fit_rows], y[fit_rows]))
    memory.mark("all")
    return {
        "rows": len(y),
        "parse_s": parse_s,
        "fit_s": fit_s,
        "validation_accuracy": float(model.score(x[held], y[held])),
        "peak_mb": memory.peak(),
    }


def _spawn(kind: str, csv: Path, rows: int, workdir: Path) -> dict[str, Any]:
    """One child (a fresh interpreter, one BLAS thread); its JSON line, or the error."""
    command = [sys.executable, "-m", "bench.training", "--child", kind, "--csv", str(csv)]
    command += ["--rows", str(rows), "--workdir", str(workdir)]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=_CHILD_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return {"error": f"no answer within {_CHILD_TIMEOUT_S} s"}
    if done.returncode != 0:
        return {"error": (done.stderr.strip() or f"exit {done.returncode}")[-1500:]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _has_sklearn() -> bool:
    from importlib.util import find_spec

    return find_spec("sklearn") is not None


# -- the measurement --------------------------------------------------------------------------


def run(
    workdir: Path, sizes: tuple[int, ...] = SIZES, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Every size: the service's training job, then scikit-learn's, each in its own child."""
    files = write_files(workdir, sizes)
    results: dict[str, Any] = {"features": FEATURES, "seed": SEED, "sizes": {}}
    try:
        for rows, csv in files.items():
            model_dir = Path(tempfile.mkdtemp(prefix="model-", dir=workdir))
            entry = {"service": _spawn("service", csv, rows, model_dir)}
            if _has_sklearn():
                entry["sklearn"] = _spawn("sklearn", csv, rows, workdir)
            results["sizes"][str(rows)] = entry
            log(f"training {rows:,} x {FEATURES}: {_summary(entry['service'])}")
    finally:
        for csv in files.values():
            csv.unlink(missing_ok=True)
    return results


def _summary(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"failed: {result['error'].splitlines()[-1]}"
    return (
        f"{rows_per_s(result):,.0f} rows/s (parse {result['parse_s']:.2f} s, train "
        f"{result['train_s']:.2f} s), peak {result['peak_mb']:.0f} MB"
    )


def rows_per_s(result: dict[str, Any], *parts: str) -> float:
    """Rows over the seconds of ``parts`` (default: parse and train)."""
    seconds = sum(result[p] for p in parts or ("parse_s", "train_s"))
    return float(result["rows"] / seconds)


# -- the report -------------------------------------------------------------------------------


def _entries(data: dict[str, Any]) -> Iterator[tuple[int, dict[str, Any], dict[str, Any]]]:
    training = data.get("training") or {}
    for rows, entry in training.get("sizes", {}).items():
        yield int(rows), entry["service"], entry.get("sklearn") or {}


def _accuracy(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _speed_row(rows: int, ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    name = f"{rows:,} x {FEATURES}"
    if "error" in ours:
        return f"| {name} | failed: {ours['error'].splitlines()[-1][:200]} | | | | | | |"
    sk = "-"
    if "validation_accuracy" in theirs:
        sk = f"{theirs['validation_accuracy']:.4f} ({theirs['fit_s']:.2f} s)"
    return (
        f"| {name} | {rows_per_s(ours):,.0f} | {ours['parse_s']:.2f} "
        f"({rows_per_s(ours, 'parse_s'):,.0f}/s) | {ours['train_s']:.2f} "
        f"({rows_per_s(ours, 'train_s'):,.0f}/s) | {ours['peak_mb']:.0f} | "
        f"{_accuracy(ours['validation_accuracy'])} | {_accuracy(ours['accuracy'])} | {sk} |"
    )


def _memory_rows(data: dict[str, Any]) -> list[str]:
    out = []
    for rows, ours, theirs in _entries(data):
        phases = ours.get("phase_peak_mb") or {}
        if not phases:
            continue
        cells = " | ".join(
            f"{phases.get(p, float('nan')):.0f}" for p in ("imports", "parse", "train")
        )
        sk = f"{theirs['peak_mb']:.0f}" if "peak_mb" in theirs else "-"
        out.append(f"| {rows:,} x {FEATURES} | {cells} | {sk} |")
    if not out:
        return []
    return [
        "",
        "| rows x features | peak MB: imports | reading the CSV | training and saving | "
        "scikit-learn's process (reading + fit) |",
        "|---|---:|---:|---:|---:|",
        *out,
    ]


def table(data: dict[str, Any]) -> list[str]:
    """The report's Training section (also what ``python -m bench.training`` prints)."""
    entries = list(_entries(data))
    if not entries:
        return []
    return [
        "",
        "## Training on big data (CSV, 10 raw features, one process per run)",
        "",
        "| rows x features | rows/s (read + train) | read s (rows/s) | train + save s (rows/s) "
        "| peak RSS MB | held-out accuracy | accuracy, refit on all rows | scikit-learn "
        "held-out accuracy (fit s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *(_speed_row(rows, ours, theirs) for rows, ours, theirs in entries),
        *_memory_rows(data),
        "",
        "A seeded CSV: 10 features on scales 10^-2 to 10^3 with offsets, a 0/1 target drawn "
        "from a logistic model of the standardized features (Bayes accuracy below 1). Each run "
        "is a fresh process with one BLAS thread doing what a training job does: "
        "`read_csv` of the file, `RetrainRequest(standardize=True)` with the defaults "
        "otherwise (mini-batches of 1,024 rows above 10,000, a quarter held out, then a refit "
        "on every row), `ModelServer.retrain` into a temp model directory. Peak RSS is the "
        "process's VmHWM (the interpreter and imports included), reset between phases. "
        "scikit-learn: StandardScaler + LogisticRegression (defaults, lbfgs) fitted on the "
        "same training rows in a process of its own, scored on the same held-out rows.",
    ]


# -- the command line -------------------------------------------------------------------------


def _child(args: argparse.Namespace) -> int:
    if args.child == "service":
        result = child_service(args.csv, args.rows, args.workdir)
    else:
        result = child_sklearn(args.csv, args.rows)
    print(json.dumps(result))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=("service", "sklearn"), help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args()
    if args.child:
        return _child(args)
    with tempfile.TemporaryDirectory(prefix="bench-training-") as workdir:
        data = {"training": run(Path(workdir), tuple(args.sizes), _stderr)}
    print("\n".join(table(data)).lstrip("\n"))
    return 0


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
