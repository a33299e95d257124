"""The gRPC server in this process (no gunicorn): its drain on stop, errors, the port claim."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import numpy as np
import pytest

from service.app import create_app
from service.oip.rpc import server as rpc_server
from service.oip.rpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from service.server import grpcside
from service.serving import ModelServer
from service.settings import Settings

from .integration.grpcmsg import outputs, raw_request
from .integration.server import free_port

ROWS = np.array([[1.0, 0.0, 0.0]])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ModelServer, Any, str]]:
    """(the model server, its started grpc.Server, the target) on a free port."""
    target = f"127.0.0.1:{free_port()}"
    settings = Settings(model_dir=tmp_path / "model", grpc_bind=target, log_level="warning")
    model_server = create_app(settings).extensions["neuron"]
    grpc_server = rpc_server.start(model_server)
    try:
        yield model_server, grpc_server, target
    finally:
        grpc_server.stop(None).wait(5)


def test_stop_lets_a_call_in_flight_finish_and_refuses_new_ones(
    served: tuple[ModelServer, Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model_server, grpc_server, target = served
    entered, infer = threading.Event(), model_server.infer

    def slow_infer(*args: Any) -> Any:
        entered.set()
        time.sleep(0.5)
        return infer(*args)

    monkeypatch.setattr(model_server, "infer", slow_infer)
    with grpc.insecure_channel(target) as channel:
        stub = GRPCInferenceServiceStub(channel)
        future = stub.ModelInfer.future(raw_request(ROWS), timeout=10)
        assert entered.wait(5)
        stopping = threading.Thread(
            target=grpcside.stop, args=(SimpleNamespace(grpc_server=grpc_server), 5.0)
        )
        stopping.start()
        assert np.array_equal(outputs(future.result()), infer(ROWS)[0])
        stopping.join(10)
        assert not stopping.is_alive()
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(raw_request(ROWS), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_an_unexpected_error_is_internal_and_not_shown(
    served: tuple[ModelServer, Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model_server, _, target = served

    def broken(*args: Any) -> Any:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(model_server, "infer", broken)
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as caught:
        GRPCInferenceServiceStub(channel).ModelInfer(raw_request(ROWS), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == "internal error; see the server log"


def test_the_repository_extension_is_unimplemented(served: tuple[ModelServer, Any, str]) -> None:
    from service.oip.rpc import grpc_predict_v2_pb2 as pb

    with grpc.insecure_channel(served[2]) as channel, pytest.raises(grpc.RpcError) as caught:
        GRPCInferenceServiceStub(channel).RepositoryModelLoad(
            pb.RepositoryModelLoadRequest(model_name="neuron"), timeout=5
        )
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_the_claimed_port_takes_the_workers_and_refuses_anyone_else() -> None:
    port = free_port()
    guard = grpcside.claim_port(Settings(grpc_bind=f"127.0.0.1:{port}"))
    assert guard is not None
    try:
        with socket.socket() as worker:  # what grpcio does in each worker
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            worker.bind(("127.0.0.1", port))
            worker.listen()
        with pytest.raises(OSError, match=f"NEURON_GRPC_BIND 127.0.0.1:{port} is in use"):
            grpcside.claim_port(Settings(grpc_bind=f"127.0.0.1:{port}"))
    finally:
        guard.close()
    assert grpcside.claim_port(Settings(grpc_bind="")) is None
