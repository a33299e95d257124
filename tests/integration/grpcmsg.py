"""Hand-built V2 gRPC messages and a raw grpcio call: what the hostile and worker tests send.

Our generated stubs (service/oip/rpc), not a client library: every field is what the test
puts there. ``rest_twin`` gives the REST binary request carrying the same tensor, so a test
can ask REST for the message it must see over gRPC.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np
import orjson

from service.oip.rpc import grpc_predict_v2_pb2 as pb
from service.oip.rpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

Tensor = pb.ModelInferRequest.InferInputTensor
TIMEOUT = 10.0


def raw_request(
    rows: np.ndarray | bytes,
    shape: Sequence[int] | None = None,
    datatype: str = "FP64",
    model_name: str = "neuron",
    model_version: str = "",
    name: str = "input0",
) -> pb.ModelInferRequest:
    """One input whose data is raw_input_contents (what tritonclient sends by default)."""
    data = rows if isinstance(rows, bytes) else np.ascontiguousarray(rows).tobytes()
    if shape is None:
        assert isinstance(rows, np.ndarray)
        shape = rows.shape
    return pb.ModelInferRequest(
        model_name=model_name,
        model_version=model_version,
        inputs=[Tensor(name=name, datatype=datatype, shape=list(shape))],
        raw_input_contents=[data],
    )


def typed_request(
    field: str, values: Sequence[Any], shape: Sequence[int], datatype: str = "FP64"
) -> pb.ModelInferRequest:
    """One input whose data is in the typed contents field ``field``."""
    tensor = Tensor(name="input0", datatype=datatype, shape=list(shape))
    getattr(tensor.contents, field).extend(values)
    return pb.ModelInferRequest(model_name="neuron", inputs=[tensor])


def rest_twin(message: pb.ModelInferRequest) -> tuple[str, bytes, dict[str, str]]:
    """(path, body, headers) of the REST binary infer carrying ``message``'s raw tensors."""
    inputs = [
        {
            "name": t.name,
            "shape": list(t.shape),
            "datatype": t.datatype,
            "parameters": {"binary_data_size": len(raw)},
        }
        for t, raw in zip(message.inputs, message.raw_input_contents, strict=True)
    ]
    header = orjson.dumps({"inputs": inputs})
    path = f"/v2/models/{message.model_name}"
    if message.model_version:
        path += f"/versions/{message.model_version}"
    headers = {"Inference-Header-Content-Length": str(len(header))}
    return f"{path}/infer", header + b"".join(message.raw_input_contents), headers


def infer(
    target: str, message: pb.ModelInferRequest, metadata: Sequence[tuple[str, str]] = ()
) -> pb.ModelInferResponse:
    """One ModelInfer on a new channel (a new connection: it may reach another worker)."""
    options = [("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = GRPCInferenceServiceStub(channel)
        return stub.ModelInfer(message, timeout=TIMEOUT, metadata=metadata)


def refusal(target: str, message: pb.ModelInferRequest) -> tuple[grpc.StatusCode, str]:
    """The status code and details of a call that must fail."""
    try:
        infer(target, message)
    except grpc.RpcError as error:
        return error.code(), error.details()
    raise AssertionError("the call succeeded")


def outputs(response: pb.ModelInferResponse) -> np.ndarray:
    """The probabilities of a raw (FP64) answer."""
    return np.frombuffer(response.raw_output_contents[0], dtype="<f8")
