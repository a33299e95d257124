"""Where gRPC runs: a server in every gunicorn worker on one port (SO_REUSEPORT).

A retrain reaches gRPC in every worker as it reaches REST; a killed worker costs gRPC no more
than it costs REST; the port is held for one server only; an empty NEURON_GRPC_BIND is off.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from . import grpcmsg
from .grpcmsg import raw_request
from .server import TOKEN, Gunicorn

AUTH = {"Authorization": f"Bearer {TOKEN}"}
ENDPOINT = "/inference.GRPCInferenceService/ModelInfer"
MAX_CHANNELS = 60  # fresh connections tried before concluding a worker never answers


def _grpc_pids(server: Gunicorn, request_ids: set[str]) -> set[int]:
    """The workers that logged these gRPC calls (an access line names its pid)."""
    return {
        line["pid"]
        for line in server.log_lines()
        if line.get("endpoint") == ENDPOINT and line.get("request_id") in request_ids
    }


def _calls_until_every_worker_answered(
    server: Gunicorn, message: grpcmsg.pb.ModelInferRequest, tag: str
) -> list[grpcmsg.pb.ModelInferResponse]:
    """ModelInfer on fresh channels until every live worker has served one (bounded)."""
    answers, ids = [], set()
    for n in range(MAX_CHANNELS):
        request_id = f"{tag}-{n}"
        ids.add(request_id)
        answers.append(grpcmsg.infer(server.grpc_target, message, [("x-request-id", request_id)]))
        if n >= 3 and _grpc_pids(server, ids) == server.worker_pids():
            break
    assert _grpc_pids(server, ids) == server.worker_pids(), "a worker never answered gRPC"
    return answers


def test_every_worker_serves_a_retrain_over_grpc_at_once(server: Gunicorn) -> None:
    body = {"inputs": [[1, 0], [0, 1], [1, 1], [0, 0]], "targets": [0, 1, 1, 0], "l2": 0}
    retrained = server.post("/admin/retrain", body, headers=AUTH)
    assert retrained.status_code == 200, retrained.text
    version = retrained.json()["model_version"]
    assert version == 2
    # No wait: the next call on any worker reads the store's pointer (CurrentModel.get()).
    rows = np.array([[0.0, 1.0]])
    answers = _calls_until_every_worker_answered(server, raw_request(rows), "retrain")
    rest = server.post("/predict", {"inputs": rows.tolist()}).json()
    assert {a.model_version for a in answers} == {str(version)} == {str(rest["model_version"])}
    assert all(np.array_equal(grpcmsg.outputs(a), rest["predictions"]) for a in answers)
    # The kept version 1 stays reachable by number, as under /v2/models/neuron/versions/1.
    old = grpcmsg.infer(server.grpc_target, raw_request(np.array([[1.0, 0, 0]]), model_version="1"))
    assert old.model_version == "1"


def test_a_killed_worker_costs_grpc_no_more_than_rest(server: Gunicorn) -> None:
    rows = np.array([[1.0, 0.0, 0.0]])
    victim = min(server.worker_pids())
    os.kill(victim, signal.SIGKILL)
    # Once it is gone, fresh connections reach the survivor: the dead worker's socket left
    # the SO_REUSEPORT group with it. (Connections already in its accept queue when it died
    # are reset, unless net.ipv4.tcp_migrate_req moves them: docs/v2-grpc.md.)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{victim}").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    for n in range(20):
        answer = grpcmsg.infer(server.grpc_target, raw_request(rows), [("x-request-id", f"k{n}")])
        assert answer.model_version == "1"
    # gunicorn replaces the worker; the new one serves gRPC too.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = server.worker_pids()
        if (
            len(pids) == 2
            and victim not in pids
            and all(f"Worker ready (pid: {p})" in server.log() for p in pids)
        ):
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"no replacement worker:\n{server.log_tail()}")
    _calls_until_every_worker_answered(server, raw_request(rows), "after")


def test_the_grpc_port_is_held_for_one_server(server: Gunicorn, tmp_path: Path) -> None:
    # A second server told the same gRPC address must fail to start, not share it silently.
    intruder = Gunicorn(tmp_path / "intruder", env={"NEURON_GRPC_BIND": server.grpc_target})
    with pytest.raises(RuntimeError, match="exited early"):
        intruder.start(timeout=20)
    assert f"NEURON_GRPC_BIND {server.grpc_target} is in use" in intruder.log()
    # ...while the first one goes on serving every call.
    for n in range(10):
        grpcmsg.infer(
            server.grpc_target, raw_request(np.array([[1.0, 0, 0]])), [("x-request-id", f"i{n}")]
        )


def test_an_empty_grpc_bind_turns_grpc_off(tmp_path: Path) -> None:
    quiet = Gunicorn(tmp_path / "off", env={"NEURON_GRPC_BIND": ""}).start()
    try:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", quiet.grpc_port), timeout=2).close()
        assert quiet.post("/predict", {"inputs": [[1, 0, 0]]}).status_code == 200
        assert "Serving gRPC" not in quiet.log()
    finally:
        quiet.stop()


def test_the_server_stops_cleanly_with_a_call_in_flight(server: Gunicorn) -> None:
    # SIGTERM: each worker's gRPC server stops taking calls and drains what it holds (the
    # drain itself, with a call held for sure, is tests/test_grpc_server.py's). A call that
    # no worker had started when they stopped fails, UNAVAILABLE or CANCELLED (both seen);
    # one that started is answered whole.
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = grpcmsg.GRPCInferenceServiceStub(channel)
        stub.ModelInfer(raw_request(np.zeros((1, 3))), timeout=10)  # the connection is up
        future = stub.ModelInfer.future(raw_request(np.zeros((10_000, 3))), timeout=10)
        server.stop()
        not_started = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        assert future.code() == grpc.StatusCode.OK or future.code() in not_started
        if future.code() == grpc.StatusCode.OK:
            assert len(grpcmsg.outputs(future.result())) == 10_000
    assert "Traceback" not in server.log()
    assert server.proc is not None and server.proc.returncode == 0
