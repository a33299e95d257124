"""The bench's targets table (bench/targets.py), from hand-made figures of one run."""

from __future__ import annotations

from typing import Any

from bench.targets import Spread, context, targets


def _run(rps: float, cpu_us: float, shares: list[float]) -> dict[str, Any]:
    return {"rps": rps, "cpu_us": cpu_us, "p50_ms": 1.0, "p99_ms": 9.0, "worker_share": shares}


def _data(service_shares: list[float]) -> dict[str, Any]:
    load = {
        "bare": {"runs": [_run(8000, 200, [0.5, 0.5])] * 3},
        "flask": {"runs": [_run(4000, 300, [0.5, 0.5])] * 3},
        "service": {"runs": [_run(3800, 330, s) for s in service_shares]},
    }
    batch = [{"wall_ms": 3.0, "rows_per_s": 10_000 / 0.003, "cpu_ms": 3.0}]
    floor = [{"wall_ms": 0.5, "rows_per_s": 0.0, "cpu_ms": 0.4}]
    return {
        "load": load,
        "batch": {"service": batch, "bare": floor},
        "startup_s": {"existing model": [0.6, 0.7, 0.8]},
        "rss_mb": {"service": [70.0, 81.0]},
    }


def test_each_target_is_judged_on_its_side() -> None:
    rows = {t.name: t for t in targets(_data([[0.5, 0.5]] * 3))}
    rps = rows["single-row req/s: service / Flask floor"]
    assert rps.measured == Spread(0.95, 0.95, 0.95) and rps.met
    cpu = rows["server CPU per request: service / Flask floor"]
    assert cpu.measured.median == 1.1 and cpu.met
    over = rows["10,000-row JSON /predict: wall over the bare WSGI floor (same bytes)"]
    assert over.measured.median == 2.5 and over.met is False
    assert rows["worker RSS, largest service worker"].met is False  # 81 MB > 80
    assert rows["ready with an existing model"].measured == Spread(0.7, 0.6, 0.8)
    assert rows["single-row p99 latency of the service, wrk -c16"].met is None  # reported


def test_one_idle_worker_in_any_run_misses_the_keepalive_target() -> None:
    name = "keep-alive load: smallest worker's share of the workers' CPU, any run"
    fair = {t.name: t for t in targets(_data([[0.5, 0.5], [0.55, 0.45], [0.5, 0.5]]))}[name]
    assert fair.target == 0.25 and fair.met
    idle = {t.name: t for t in targets(_data([[0.5, 0.5], [0.97, 0.03], [0.5, 0.5]]))}[name]
    assert idle.measured == Spread(0.03, 0.03, 0.5)  # the worst run, not the median one
    assert idle.met is False


def test_a_baseline_runs_its_own_config_and_does_not_count_for_keepalive() -> None:
    data = _data([[0.5, 0.5]] * 3)
    data["load"]["service@baseline"] = {"runs": [_run(3000, 400, [1.0, 0.0])] * 3}
    rows = {t.name: t for t in targets(data)}
    assert rows["keep-alive load: smallest worker's share of the workers' CPU, any run"].met


def test_drift_cost_is_judged_per_repetition_against_counting_off() -> None:
    data = _data([[0.5, 0.5]] * 3)
    off = [_run(3900, 320, [0.5, 0.5]), _run(3800, 330, [0.5, 0.5]), _run(3700, 330, [0.5, 0.5])]
    data["drift_load"] = {
        "service-drift": data["load"]["service"],
        "service-nodrift": {"runs": off},
    }
    data["drift_batch"] = {
        "on": [{"wall_ms": 3.3, "cpu_ms": 3.0, "rows_per_s": 1.0}],
        "off": [{"wall_ms": 3.0, "cpu_ms": 3.0, "rows_per_s": 1.0}],
    }
    rows = {t.name: t for t in targets(data)}
    single = rows["drift cost: 1 - req/s(drift on) / req/s(off), single row"]
    assert single.measured.median == 0.0 and single.met  # 3800 / 3800 in the middle run
    assert single.measured.hi == 1 - 3800 / 3900 > 0.025
    batch = rows["drift cost: wall(drift on) / wall(off) - 1, 10,000-row JSON /predict"]
    assert batch.measured.median == 3.3 / 3.0 - 1 and batch.met is False  # 10 % > 5 %


def _training(peak_mb: float) -> dict[str, Any]:
    def run(rows: int, parse_s: float, train_s: float, peak: float) -> dict[str, Any]:
        return {"rows": rows, "parse_s": parse_s, "train_s": train_s, "peak_mb": peak}

    return {
        "sizes": {
            "100000": {"service": run(100_000, 0.25, 0.75, 90.0)},
            "1000000": {"service": run(1_000_000, 2.5, 7.5, peak_mb)},
        }
    }


def test_training_memory_is_a_ceiling_and_its_speed_only_context() -> None:
    data = _data([[0.5, 0.5]] * 3)
    name = "training process peak memory, 10^6 x 10"
    assert name not in {t.name for t in targets(data)}  # no training run: no row
    data["training"] = _training(359.0)
    peak = {t.name: t for t in targets(data)}[name]
    assert peak.measured == Spread(359.0, 359.0, 359.0) and peak.target == 500 and peak.met
    data["training"] = _training(512.0)
    assert {t.name: t for t in targets(data)}[name].met is False
    speeds = {c.name: c.measured.median for c in context(data, "gthread", "sync")}
    assert speeds["training rows/s (read the CSV, train, save), 100,000 x 10"] == 100_000
    assert speeds["training rows/s (read the CSV, train, save), 1,000,000 x 10"] == 100_000


def test_a_failed_training_run_misses_the_memory_target() -> None:
    data = _data([[0.5, 0.5]] * 3)
    data["training"] = {"sizes": {"1000000": {"service": {"error": "MemoryError"}}}}
    rows = {t.name: t for t in targets(data)}
    assert rows["training process peak memory, 10^6 x 10"].met is False
    assert not [c for c in context(data, "gthread", "sync") if c.name.startswith("training")]
