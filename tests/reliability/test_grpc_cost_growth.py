"""Hostile ModelInfer messages cost time linear in their size, as REST's bodies do.

The method of test_cost_growth.py: each family at 256 KiB and just under the message limit
(the body limit, 4 MiB), sent to one gunicorn worker's gRPC server; the cost is the worker's
CPU time, the least of a few tries; sixteen times the bytes may cost up to MAX_RATIO times.
Each gets a clean status (never INTERNAL or UNKNOWN: no worker trouble).
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import numpy as np
import pytest

from service.oip.rpc import grpc_predict_v2_pb2 as pb
from service.oip.rpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from tests.integration.grpcmsg import Tensor, raw_request, typed_request
from tests.integration.server import Gunicorn

from .test_cost_growth import CEILING_S, LARGE, MAX_RATIO, NOISE_FLOOR_S, ROUNDS, SMALL, TRIES
from .test_cost_growth import _cpu_seconds as cpu_seconds

# Answered (parameters are read and ignored, as REST ignores them) or refused cleanly.
CLEAN = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}


def _many_inputs(size: int) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="neuron")
    for i in range(size // 24):
        message.inputs.add(name=f"i{i}", datatype="FP64", shape=[1, 3])
    return message


def _many_parameters(size: int) -> pb.ModelInferRequest:
    message = raw_request(np.zeros((1, 3)))
    for i in range(size // 16):
        message.parameters[f"p{i}"].int64_param = i
    return message


def _long_name(size: int) -> pb.ModelInferRequest:
    message = raw_request(np.zeros((1, 2)))  # a wrong width: the error names the input
    message.inputs[0].name = "n" * size
    return message


# family -> a hostile message of about ``size`` bytes
FAMILIES: dict[str, Callable[[int], pb.ModelInferRequest]] = {
    "raw bytes the shape disagrees with": lambda size: raw_request(b"\0" * size, shape=[1, 3]),
    "raw rows past the batch limit": lambda size: raw_request(np.zeros((size // 24, 3))),
    "typed doubles the shape disagrees with": lambda size: typed_request(
        "fp64_contents", [0.5] * (size // 8), [1, 3]
    ),
    "typed INT8 out of range": lambda size: typed_request(
        "int_contents", [300] * (size // 2), [size // 6, 3], "INT8"
    ),
    "many input tensors": _many_inputs,
    "many parameters": _many_parameters,
    "a long model name": lambda size: raw_request(np.zeros((1, 3)), model_name="m" * size),
    "a long input name": _long_name,
    "raw and typed contents both": lambda size: _both(size),
}


def _both(size: int) -> pb.ModelInferRequest:
    message = raw_request(np.zeros((1, 3)))
    message.inputs[0].contents.fp64_contents.extend([0.0] * (size // 8))
    return message


def _sized(family: str, size: int) -> bytes:
    """The family's message at most ``size`` bytes, serialized once (sent as is, TRIES times)."""
    data = FAMILIES[family](size).SerializeToString()
    while len(data) > size:
        data = FAMILIES[family](int(size * size / len(data) * 0.98)).SerializeToString()
    return data


def _cost(server: Gunicorn, data: bytes) -> tuple[float, grpc.StatusCode]:
    """(least worker CPU seconds, status) over TRIES identical calls on one channel."""
    [pid] = server.worker_pids()
    cpu, code = float("inf"), grpc.StatusCode.OK
    with grpc.insecure_channel(server.grpc_target) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=None,  # the bytes as built
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=10)
        for _ in range(TRIES):
            before = cpu_seconds(pid)
            try:
                call(data, timeout=60)
            except grpc.RpcError as error:
                code = error.code()
            cpu = min(cpu, cpu_seconds(pid) - before)
    return cpu, code


@pytest.mark.parametrize("family", list(FAMILIES))
def test_grpc_cost_grows_linearly(one_worker: Gunicorn, family: str) -> None:
    small, large = _sized(family, SMALL), _sized(family, LARGE)
    assert len(large) > 8 * len(small)
    for _ in range(ROUNDS):  # another round only if a busy machine blurred the first
        small_cpu, small_code = _cost(one_worker, small)
        large_cpu, large_code = _cost(one_worker, large)
        ratio = large_cpu / max(small_cpu, NOISE_FLOOR_S)
        if ratio <= MAX_RATIO:
            break
    assert small_code in CLEAN and large_code in CLEAN, (small_code, large_code)
    assert large_cpu < CEILING_S, (small_cpu, large_cpu)
    assert ratio <= MAX_RATIO, (small_cpu, large_cpu)
    assert "Traceback" not in one_worker.log()


def test_a_message_echoing_a_huge_name_is_cut_to_fit_a_trailer(one_worker: Gunicorn) -> None:
    with grpc.insecure_channel(one_worker.grpc_target) as channel:
        stub = GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(pb.ModelInferRequest(
                model_name="neuron",
                inputs=[Tensor(name="n" * 100_000, datatype="FP64", shape=[1, 3])],
                raw_input_contents=[b"\0" * 16],
            ), timeout=10)  # fmt: skip
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert 1000 < len(caught.value.details()) <= 2048
