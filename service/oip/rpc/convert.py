"""ModelInferRequest to what a REST infer reads, and an answer back to ModelInferResponse.

A gRPC request becomes the InferenceRequest a REST body of the same tensor would be, and its
data goes through the same codec: raw_input_contents as binary tensor data (numpy reads the
bytes in place), typed contents as a JSON data list. So every check, and every message, is
REST's. No grpc import here: messages only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ...http.web import validate
from ..codec import BINARY_DATATYPES, OUTPUT_DATATYPES, Float64Matrix, bad, to_matrix
from ..schemas import MODEL_NAME, OUTPUT_NAME, InferenceRequest, Parameters, model_metadata
from . import grpc_predict_v2_pb2 as pb

# Where InferTensorContents carries each datatype (grpc_predict_v2.proto).
CONTENTS_FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_FLOAT_FIELDS = frozenset({"fp32_contents", "fp64_contents"})


def parameters(given: Mapping[str, pb.InferParameter]) -> Parameters:
    """A parameters map as the JSON object REST would have read."""
    out: Parameters = {}
    for name, value in given.items():
        choice = value.WhichOneof("parameter_choice")
        if choice is None:
            raise bad(f"parameter {name!r} has no bool, int64 or string value")
        out[name] = getattr(value, choice)
    return out


def infer_request(
    message: pb.ModelInferRequest, max_rows: int
) -> tuple[InferenceRequest, Float64Matrix]:
    """The request and its input matrix; a ServiceError (400) on any defect, REST's message."""
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise bad(
            f"raw_input_contents holds {len(raw)} tensors for {len(message.inputs)} inputs: "
            "send one per input, in the order of the inputs"
        )
    sizes = [len(data) for data in raw] if raw else [None] * len(message.inputs)
    payload: dict[str, Any] = {
        "id": message.id or None,
        "parameters": parameters(message.parameters) or None,
        "inputs": [_input(t, size) for t, size in zip(message.inputs, sizes, strict=True)],
        "outputs": [
            {"name": o.name, "parameters": parameters(o.parameters) or None}
            for o in message.outputs
        ]
        or None,
    }
    request = validate(InferenceRequest, payload)
    if raw or len(message.inputs) != 1:
        # More than one input: to_matrix refuses them before it reads any data.
        return request, to_matrix(request, max_rows, memoryview(raw[0]) if raw else None)
    tensor = message.inputs[0]
    field = _filled_field(tensor)
    data = getattr(tensor.contents, field)
    if CONTENTS_FIELDS.get(tensor.datatype) in _FLOAT_FIELDS:
        # REST's JSON path for a flat list of numbers: one float64 array, no Python float each.
        values = np.array(data, dtype=np.float64)
        return request, to_matrix(request, max_rows, values=values)
    json_like = request.model_copy(
        update={"inputs": [request.inputs[0].model_copy(update={"data": list(data)})]}
    )
    return request, to_matrix(json_like, max_rows)


def _input(tensor: pb.ModelInferRequest.InferInputTensor, raw_size: int | None) -> dict[str, Any]:
    """One input as REST's JSON: binary_data_size for raw data, else an empty data list."""
    entry: dict[str, Any] = {
        "name": tensor.name,
        "shape": list(tensor.shape),
        "datatype": tensor.datatype,
        "parameters": parameters(tensor.parameters),
    }
    if raw_size is None:
        entry["data"] = []  # filled from the typed contents once the request is read
    elif tensor.HasField("contents"):
        raise bad(f"input {tensor.name!r} has both contents and raw_input_contents")
    else:
        entry["parameters"]["binary_data_size"] = raw_size
    entry["parameters"] = entry["parameters"] or None
    return entry


def _filled_field(tensor: pb.ModelInferRequest.InferInputTensor) -> str:
    """The one contents field holding the tensor's data: the one its datatype names."""
    filled = [field.name for field, _ in tensor.contents.ListFields()]
    if not filled:
        raise bad(f"input {tensor.name!r} has no data (neither contents nor raw_input_contents)")
    expected = CONTENTS_FIELDS.get(tensor.datatype)
    if len(filled) > 1 or (expected is not None and filled[0] != expected):
        where = f"in {expected}" if expected else "as raw_input_contents or not at all"
        raise bad(
            f"input {tensor.name!r} of datatype {tensor.datatype!r} carries its data {where}, "
            f"not in {', '.join(filled)}"
        )
    # A datatype without a contents field (FP16, unknown): the codec names what it accepts.
    return str(filled[0])


def infer_response(
    request: InferenceRequest,
    probabilities: Float64Matrix,
    version: int,
    datatype: str,
    raw: bool,
) -> pb.ModelInferResponse:
    """The output as raw_output_contents (when the input came raw) or typed contents."""
    response = pb.ModelInferResponse(
        model_name=MODEL_NAME, model_version=str(version), id=request.id or ""
    )
    output = response.outputs.add(name=OUTPUT_NAME, datatype=datatype)
    output.shape.extend((len(probabilities), 1))
    if raw:
        data = probabilities.astype(BINARY_DATATYPES[datatype], copy=False)
        response.raw_output_contents.append(np.ascontiguousarray(data).tobytes())
    else:
        data = probabilities.astype(OUTPUT_DATATYPES[datatype], copy=False)
        getattr(output.contents, CONTENTS_FIELDS[datatype]).extend(data.ravel().tolist())
    return response


def metadata_response(n_inputs: int, versions: list[int]) -> pb.ModelMetadataResponse:
    """REST's model metadata; the proto has no parameters field for its bias or hidden layer."""
    metadata = model_metadata(n_inputs, versions)
    response = pb.ModelMetadataResponse(
        name=metadata.name, versions=metadata.versions, platform=metadata.platform
    )
    for tensors, into in ((metadata.inputs, response.inputs), (metadata.outputs, response.outputs)):
        for tensor in tensors:
            into.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
    return response
