"""The committed gRPC stubs are exactly what `make grpc-stubs` generates from the proto."""

from __future__ import annotations

from pathlib import Path

import pytest

from .grpcstubs import RPC_DIR, STUBS, generate


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stubs")
    generate(out)
    return out


@pytest.mark.parametrize("name", STUBS)
def test_a_committed_stub_is_what_the_proto_generates(generated: Path, name: str) -> None:
    assert (RPC_DIR / name).read_text() == (generated / name).read_text(), (
        f"service/oip/rpc/{name} differs from what grpcio-tools generates: run make grpc-stubs"
    )


def test_the_proto_registers_the_descriptor_kserves_sdk_registers() -> None:
    # Identical file name and content: both load in one process (this one, with the SDK's tests).
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as kserve_pb2

    from service.oip.rpc import grpc_predict_v2_pb2 as ours

    assert ours.DESCRIPTOR.serialized_pb == kserve_pb2.DESCRIPTOR.serialized_pb
    assert ours.ModelInferRequest is kserve_pb2.ModelInferRequest
