"""The tensor codec of the Open Inference Protocol: request tensors to a matrix, and back.

The tensor is checked by numpy (shape against data length, datatype range), as the main API
does for its matrices. No Flask here.
"""

from __future__ import annotations

from itertools import chain
from math import prod
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ValidationFailed
from .schemas import (
    DEFAULT_OUTPUT_DATATYPE,
    INPUT_NAME,
    MODEL_NAME,
    OUTPUT_NAME,
    InferenceRequest,
    RequestOutput,
)

INPUT_DATATYPES: dict[str, type[np.generic]] = {
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP32": np.float32,
    "FP64": np.float64,
}
OUTPUT_DATATYPES: dict[str, type[np.floating[Any]]] = {"FP32": np.float32, "FP64": np.float64}
_NUMBER_TYPES = frozenset({int, float})
_LIST_TYPE = frozenset({list})

Float64Matrix = NDArray[np.float64]


def bad(message: str) -> ValidationFailed:
    """A request the protocol answers with 400."""
    return ValidationFailed(message)


def to_matrix(request: InferenceRequest, max_rows: int) -> Float64Matrix:
    """The one input tensor as a float64 (rows, n) matrix; a 400 on any defect."""
    names = [tensor.name for tensor in request.inputs]
    unknown = [name for name in names if name != INPUT_NAME]
    if unknown:
        raise bad(f"unknown input {unknown[0]!r}: model {MODEL_NAME!r} takes {INPUT_NAME!r} only")
    if len(names) > 1:
        raise bad(f"input {INPUT_NAME!r} is given {len(names)} times")
    tensor = request.inputs[0]
    if (tensor.parameters or {}).get("binary_data_size") is not None:
        raise bad("binary tensor data is not supported: send the data as JSON")
    dtype = _input_dtype(tensor.datatype)
    rows = _check_shape(tensor.shape, max_rows)
    values = _leaves(tensor.data, tensor.shape)
    if len(values) != prod(tensor.shape):
        raise bad(
            f"shape {tensor.shape} holds {prod(tensor.shape)} elements but data has {len(values)}"
        )
    if not _NUMBER_TYPES.issuperset(map(type, values)):
        raise bad("every data element must be a number (not a boolean, string, list or null)")
    if np.issubdtype(dtype, np.integer):
        array = _integers(values, tensor.datatype, np.iinfo(dtype))
    else:
        array = _floats(values, dtype)
    return array.reshape(rows, -1)


def _input_dtype(datatype: str) -> type[np.generic]:
    dtype = INPUT_DATATYPES.get(datatype)
    if dtype is None:
        accepted = ", ".join(INPUT_DATATYPES)
        raise bad(
            f"datatype {datatype!r} is not supported for {INPUT_NAME!r}; use one of {accepted}"
        )
    return dtype


def _check_shape(shape: list[int], max_rows: int) -> int:
    if len(shape) != 2 or min(shape) < 0:
        raise bad(f"shape must be [rows, n_inputs] of non-negative sizes, got {shape}")
    rows = shape[0]
    if rows < 1:
        raise bad("the batch must hold at least one row")
    if rows > max_rows:
        raise bad(f"at most {max_rows} rows are allowed, got {rows}")
    return rows


def _leaves(data: list[Any], shape: list[int]) -> list[Any]:
    """Flat data as is; nested data (a list of rows) must follow the shape exactly."""
    if not data or type(data[0]) is not list:
        return data
    if not _LIST_TYPE.issuperset(map(type, data)):
        raise bad("data must be either flat or a list of rows, not a mix")
    if len(data) != shape[0] or not {shape[1]}.issuperset(map(len, data)):
        raise bad(f"nested data does not follow shape {shape}")
    return list(chain.from_iterable(data))


def _integers(values: list[Any], datatype: str, info: np.iinfo[Any]) -> Float64Matrix:
    # orjson reads integers beyond 64 bits as floats: one message covers both defects.
    if float in map(type, values) or (
        values and (min(values) < info.min or max(values) > info.max)
    ):
        raise bad(f"datatype {datatype} takes integers within its range [{info.min}, {info.max}]")
    # Python ints within the range: exact through int64/uint64, then to the model's float64.
    return np.array(values, dtype=info.dtype).astype(np.float64)


def _floats(values: list[Any], dtype: type[np.generic]) -> Float64Matrix:
    try:
        array = np.array(values, dtype=np.float64)
    except OverflowError:
        raise bad("a value is too large for a floating-point number") from None
    if dtype is np.float32:
        with np.errstate(over="ignore"):
            array = array.astype(np.float32).astype(np.float64)
    if not np.isfinite(array).all():
        raise bad("every value must be a finite number within the range of the datatype")
    return array


def output_datatype(outputs: list[RequestOutput] | None) -> str:
    """The datatype of the one output tensor; a 400 for names or parameters we lack."""
    if not outputs:
        return DEFAULT_OUTPUT_DATATYPE
    unknown = [o.name for o in outputs if o.name != OUTPUT_NAME]
    if unknown:
        raise bad(f"unknown output {unknown[0]!r}: model {MODEL_NAME!r} has {OUTPUT_NAME!r} only")
    if len(outputs) > 1:
        raise bad(f"output {OUTPUT_NAME!r} is asked for {len(outputs)} times")
    parameters = outputs[0].parameters or {}
    if parameters.get("classification"):
        raise bad("the classification extension is not supported")
    datatype = parameters.get("datatype", DEFAULT_OUTPUT_DATATYPE)
    if datatype not in OUTPUT_DATATYPES:
        raise bad(f"output datatype must be FP32 or FP64, got {datatype!r}")
    return str(datatype)


def inference_response(
    request: InferenceRequest, probabilities: Float64Matrix, version: int, datatype: str
) -> dict[str, Any]:
    """The response as a dict whose data stays a numpy array (orjson writes it directly)."""
    data = probabilities.astype(OUTPUT_DATATYPES[datatype], copy=False)
    output = {"name": OUTPUT_NAME, "shape": [len(data), 1], "datatype": datatype, "data": data}
    response: dict[str, Any] = {"model_name": MODEL_NAME, "model_version": str(version)}
    if request.id is not None:
        response["id"] = request.id
    response["outputs"] = [output]
    return response
