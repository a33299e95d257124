"""The tensor codec of the Open Inference Protocol: request tensors to a matrix, and back.

Tensors travel as JSON or, by the binary tensor data extension, as little-endian row-major
bytes after a JSON header (its length in the Inference-Header-Content-Length header). Either
way the tensor is checked by numpy (shape against data length, datatype range, finiteness),
as the main API does for its matrices; binary data is never turned into Python numbers.
No Flask here.
"""

from __future__ import annotations

import re
from itertools import chain
from math import prod
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray
from pydantic import ValidationError

from ..errors import ServiceError, ValidationFailed
from ..http import arraybody, jsonbody
from .schemas import (
    DEFAULT_OUTPUT_DATATYPE,
    INPUT_NAME,
    MODEL_NAME,
    OUTPUT_NAME,
    InferenceRequest,
    RequestInput,
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
# Binary data has the datatype's native size, little-endian; FP16 has no JSON form.
BINARY_DATATYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(dtype).newbyteorder("<")
    for name, dtype in {**INPUT_DATATYPES, "FP16": np.float16}.items()
}
OUTPUT_DATATYPES: dict[str, type[np.floating[Any]]] = {"FP32": np.float32, "FP64": np.float64}
HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE = "application/octet-stream"
_HEADER_LENGTH = re.compile(r"[0-9]{1,19}")
_NUMBER_TYPES = frozenset({int, float})
_LIST_TYPE = frozenset({list})
_FLOAT_INPUTS = frozenset({"FP64", "FP32"})

Float64Matrix = NDArray[np.float64]


def bad(message: str) -> ValidationFailed:
    """A request the protocol answers with 400."""
    return ValidationFailed(message)


def split_body(body: bytes | bytearray, header_length: str) -> tuple[bytes, memoryview]:
    """The JSON header and the binary data after it (a view, not a copy); a 400 on a bad length."""
    if not _HEADER_LENGTH.fullmatch(header_length):
        raise bad(f"{HEADER_LENGTH} must be a non-negative integer, got {header_length[:40]!r}")
    length = int(header_length)
    if length == 0:
        raise bad(
            f"{HEADER_LENGTH}: 0 (a body without its JSON header) is not supported: "
            "send the JSON inference request first and give its length"
        )
    if length > len(body):
        raise bad(f"{HEADER_LENGTH} {length} is past the end of the body ({len(body)} bytes)")
    return bytes(body[:length]), memoryview(body)[length:]


def read_header(header: bytes) -> Any:
    """The JSON header, read as strictly as a JSON body: linear cost, no duplicate keys."""
    return jsonbody.decode(header).payload


def binary_sections(
    inputs: list[RequestInput], binary: memoryview | None
) -> list[memoryview | None]:
    """Each input's binary data (None: its data is JSON), cut in the order of the inputs.

    Every byte after the JSON header must belong to exactly one input: a section past the
    end (missing data) or bytes left over (an extra section) is a 400.
    """
    sections: list[memoryview | None] = []
    offset = 0
    for tensor in inputs:
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            sections.append(None)
            continue
        if binary is None:
            raise bad(
                f"input {tensor.name!r} has binary_data_size, but the request has no "
                f"{HEADER_LENGTH} header to say where its JSON ends"
            )
        if type(size) is not int or size < 0:
            raise bad(f"binary_data_size of input {tensor.name!r} must be a non-negative integer")
        if size > len(binary) - offset:
            raise bad(
                f"input {tensor.name!r} has binary_data_size {size}, but only "
                f"{len(binary) - offset} bytes of binary data are left in the body"
            )
        sections.append(binary[offset : offset + size])
        offset += size
    if binary is not None and offset != len(binary):
        raise bad(
            f"{len(binary) - offset} bytes after the JSON header belong to no input "
            "(binary_data_size of the inputs adds up to less)"
        )
    return sections


def json_request(body: bytes, max_rows: int) -> tuple[InferenceRequest, Float64Matrix] | None:
    """A JSON request whose tensor data is a flat list of FP64 or FP32 numbers, read without a
    Python number per value (arraybody), with its matrix; None for any other body or defect.

    None means "read it the general way", which then answers every error: the request here is
    read from the body with its data list emptied, checked as the general way checks it.
    """
    cut = arraybody.cut_array(body, "data")
    if cut is None:
        return None
    rest, values = cut
    try:
        request = InferenceRequest.model_validate(read_header(rest))
        if request.inputs[0].datatype not in _FLOAT_INPUTS:
            return None
        return request, to_matrix(request, max_rows, values=values)
    except (ServiceError, ValidationError):
        return None


def to_matrix(
    request: InferenceRequest,
    max_rows: int,
    binary: memoryview | None = None,
    values: Float64Matrix | None = None,
) -> Float64Matrix:
    """The one input tensor as a float64 (rows, n) matrix; a 400 on any defect.

    ``binary`` is the body after the JSON header when the request has one (binary tensor
    data extension), else None. ``values``: the tensor's data list, read by json_request
    (the request's own data is then the empty list it left).
    """
    # One input tensor, whatever its name: the model has a single input, and KServe's and
    # MLServer's examples name it their own way ("input-0", "predict"), as their servers allow.
    if len(request.inputs) > 1:
        names = ", ".join(repr(tensor.name) for tensor in request.inputs[:3])
        if len(request.inputs) > 3:
            names += ", ..."
        raise bad(
            f"model {MODEL_NAME!r} takes one input tensor ({INPUT_NAME!r}), "
            f"got {len(request.inputs)}: {names}"
        )
    tensor = request.inputs[0]
    [section] = binary_sections(request.inputs, binary)
    if section is not None:
        if tensor.data is not None:
            raise bad(f"input {tensor.name!r} has both JSON data and binary_data_size")
        return _from_binary(tensor, section, max_rows)
    if tensor.data is None:
        raise bad(f"input {tensor.name!r} has no data (nor binary_data_size)")
    if values is not None and not tensor.data:
        return _from_values(tensor, values, max_rows)
    return _from_json(tensor, tensor.data, max_rows)


def _from_json(tensor: RequestInput, data: list[Any], max_rows: int) -> Float64Matrix:
    if tensor.datatype in BINARY_DATATYPES and tensor.datatype not in INPUT_DATATYPES:
        raise bad(f"datatype {tensor.datatype!r} is accepted as binary tensor data only")
    dtype = _input_dtype(tensor)
    rows = _check_shape(tensor.shape, max_rows)
    values = _leaves(data, tensor.shape)
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


def _from_values(tensor: RequestInput, values: Float64Matrix, max_rows: int) -> Float64Matrix:
    """_from_json for flat FP64/FP32 data already read as float64 (finite, numbers only)."""
    dtype = _input_dtype(tensor)
    rows = _check_shape(tensor.shape, max_rows)
    if len(values) != prod(tensor.shape):
        raise bad(
            f"shape {tensor.shape} holds {prod(tensor.shape)} elements but data has {len(values)}"
        )
    return _float_array(values, dtype).reshape(rows, -1)


def _from_binary(tensor: RequestInput, section: memoryview, max_rows: int) -> Float64Matrix:
    """Little-endian row-major bytes, read by numpy.frombuffer: no Python number per value."""
    dtype = BINARY_DATATYPES.get(tensor.datatype)
    if dtype is None:
        accepted = ", ".join(BINARY_DATATYPES)
        raise bad(
            f"datatype {tensor.datatype!r} is not supported for {tensor.name!r} as binary data; "
            f"use one of {accepted}"
        )
    rows = _check_shape(tensor.shape, max_rows)
    count = prod(tensor.shape)
    if len(section) != count * dtype.itemsize:
        raise bad(
            f"binary_data_size {len(section)} of {tensor.name!r} disagrees with shape "
            f"{tensor.shape} of {tensor.datatype}: {count} x {dtype.itemsize} = "
            f"{count * dtype.itemsize} bytes"
        )
    array = np.frombuffer(section, dtype=dtype)
    # The JSON header's length leaves the data at any byte offset. numpy's SIMD loops skip
    # misaligned arrays (10,000 x 3: isfinite 14 -> 6 us, matmul 19 -> 14 us aligned), so a
    # misaligned FP64 tensor is copied (5 us); an aligned one is read in place.
    matrix = array.astype(np.float64, copy=not array.flags.aligned)
    if dtype.kind == "f" and not np.isfinite(matrix).all():
        raise bad(f"the binary data of {tensor.name!r} holds NaN or infinity")
    return matrix.reshape(rows, tensor.shape[1])


def _input_dtype(tensor: RequestInput) -> type[np.generic]:
    dtype = INPUT_DATATYPES.get(tensor.datatype)
    if dtype is None:
        accepted = ", ".join(INPUT_DATATYPES)
        raise bad(
            f"datatype {tensor.datatype!r} is not supported for {tensor.name!r}; "
            f"use one of {accepted}"
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
    return _float_array(array, dtype)


def _float_array(array: Float64Matrix, dtype: type[np.generic]) -> Float64Matrix:
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


def binary_output(request: InferenceRequest) -> bool:
    """Whether the output goes back as binary data: its binary_data, else binary_data_output."""
    wanted = _flag(request.parameters, "binary_data_output", default=False)
    if request.outputs:
        wanted = _flag(request.outputs[0].parameters, "binary_data", default=wanted)
    return wanted


def _flag(parameters: dict[str, Any] | None, name: str, default: bool) -> bool:
    value = (parameters or {}).get(name, default)
    if type(value) is not bool:
        raise bad(f"parameter {name!r} must be true or false, got {value!r}")
    return value


def inference_response(
    request: InferenceRequest, probabilities: Float64Matrix, version: int, datatype: str
) -> dict[str, Any]:
    """The response as a dict whose data stays a numpy array (orjson writes it directly)."""
    data = probabilities.astype(OUTPUT_DATATYPES[datatype], copy=False)
    output = {"name": OUTPUT_NAME, "shape": [len(data), 1], "datatype": datatype, "data": data}
    return _response(request, version, output)


def binary_response(
    request: InferenceRequest, probabilities: Float64Matrix, version: int, datatype: str
) -> tuple[bytes, int]:
    """The body of a binary response (JSON header, then the output's bytes) and header length."""
    data = np.ascontiguousarray(probabilities.astype(BINARY_DATATYPES[datatype], copy=False))
    output = {
        "name": OUTPUT_NAME,
        "shape": [len(probabilities), 1],
        "datatype": datatype,
        "parameters": {"binary_data_size": data.nbytes},
    }
    header = orjson.dumps(_response(request, version, output))
    # The array's own bytes after the header: one copy (tobytes() first was a second).
    return header + data.data.cast("B"), len(header)


def _response(request: InferenceRequest, version: int, output: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = {"model_name": MODEL_NAME, "model_version": str(version)}
    if request.id is not None:
        response["id"] = request.id
    response["outputs"] = [output]
    return response
