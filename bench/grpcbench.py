"""Load driver: the V2 infer over gRPC beside the same infer over REST, in the same round.

One row and 10,000 rows of FP64, as the protocol's clients send them by default: over REST the
binary tensor data extension (tritonclient.http), over gRPC raw_input_contents on one channel
(tritonclient.grpc). Sequential calls for a few seconds each, REST then gRPC (then MLServer's
gRPC when its bench venv is there), so each ratio is taken at the same moment.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from bench import batch
from bench.configs import V2_INFER, Config
from tests.integration.server import TICK, cpu_ticks

ROW_COUNTS = (1, batch.BATCH_ROWS)


def _message(matrix: Any, name: str = "input0") -> Any:
    from tests.integration.grpcmsg import raw_request

    return raw_request(np.ascontiguousarray(matrix, dtype="<f8"), name=name)


def grpc_calls(
    target: str, message: Any, seconds: float, pids: list[int], max_requests: int = 5000
) -> dict[str, float]:
    """Sequential ModelInfer on one channel: median client wall time, server CPU per call."""
    import grpc

    from service.oip.rpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    with grpc.insecure_channel(target) as channel:
        stub = GRPCInferenceServiceStub(channel)
        for _ in range(5):
            stub.ModelInfer(message, timeout=30)
        before = sum(cpu_ticks(p) for p in pids)
        walls: list[float] = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end and len(walls) < max_requests:
            t0 = time.perf_counter()
            stub.ModelInfer(message, timeout=30)
            walls.append(time.perf_counter() - t0)
        used = sum(cpu_ticks(p) for p in pids) - before
    return {
        "wall_ms": statistics.median(walls) * 1000,
        "cpu_ms": used / TICK * 1000 / len(walls),
        "requests": len(walls),
    }


def grpc_beside_rest(
    service: Config, seconds: float, mlserver: Config | None = None
) -> dict[str, dict[str, float]]:
    """One repetition: per row count, REST binary, then gRPC, then MLServer's gRPC."""
    out: dict[str, dict[str, float]] = {}
    for count in ROW_COUNTS:
        matrix = batch.rows()[:count]
        body, headers = batch.v2_bodies(matrix)["binary"]
        rest = batch.batch(
            service, body, seconds, max_requests=5000, path=V2_INFER, headers=headers
        )
        out[f"REST binary, {count} rows"] = rest
        target = service.server.grpc_target  # type: ignore[attr-defined]
        out[f"gRPC, {count} rows"] = grpc_calls(
            target, _message(matrix), seconds, service.server.pids()
        )
        grpc_port = getattr(mlserver.server, "grpc_port", None) if mlserver else None
        if mlserver and grpc_port:
            ml_target = f"127.0.0.1:{grpc_port}"
            try:
                ml = grpc_calls(
                    ml_target, _message(matrix, "predict"), seconds, mlserver.server.pids()
                )
            except Exception as exc:  # reported, as a failed MLServer start is
                ml = {"error": str(exc)[:200]}  # type: ignore[dict-item]
            out[f"MLServer gRPC, {count} rows"] = ml
    return out


def grpc_ratios(results: dict[str, list[dict[str, float]]]) -> dict[int, float]:
    """Per row count: the median over rounds of gRPC's wall time over REST's in that round."""
    out = {}
    for count in ROW_COUNTS:
        rest, grpc = results.get(f"REST binary, {count} rows"), results.get(f"gRPC, {count} rows")
        if rest and grpc:
            ratios = [g["wall_ms"] / r["wall_ms"] for g, r in zip(grpc, rest, strict=True)]
            out[count] = statistics.median(ratios)
    return out


def table(data: dict[str, Any]) -> list[str]:
    """The report's section: each transport's wall and CPU time, and the same-round ratios."""
    from bench.targets import Spread

    results = data.get("grpc")
    if not results:
        return []
    out = [
        "",
        "## V2 infer over gRPC beside REST (FP64, 3 features)",
        "",
        "| transport, rows | median wall ms/call | server CPU ms/call |",
        "|---|---:|---:|",
    ]
    for name, runs in results.items():
        good = [r for r in runs if "wall_ms" in r]
        if not good:
            out.append(f"| {name} | failed: {runs[-1].get('error', '?')} | |")
            continue
        wall, cpu = Spread.of(r["wall_ms"] for r in good), Spread.of(r["cpu_ms"] for r in good)
        out.append(f"| {name} | {wall.fmt(3)} | {cpu.fmt(3)} |")
    out += [
        "",
        "| rows | gRPC wall ÷ REST binary wall (median of same-round ratios) |",
        "|---:|---:|",
    ]
    out += [f"| {count:,} | {ratio:.2f} |" for count, ratio in grpc_ratios(results).items()]
    out += [
        "",
        "Sequential calls for a few seconds each on one connection (REST: keep-alive, the binary "
        "tensor data extension as tritonclient.http sends it; gRPC: one channel, "
        "raw_input_contents as tritonclient.grpc sends it), REST then gRPC in each round. "
        "Server CPU is the whole gunicorn tree's. MLServer's gRPC rows appear when its bench "
        "venv is there.",
    ]
    return out
