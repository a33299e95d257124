"""The V2 tensor codec (service/oip/codec.py): binary tensor data in and out, without Flask.

Reference bytes are built with ``struct`` (explicitly little-endian), independently of the
numpy dtypes the codec uses, and decoded answers are checked with tritonclient's own parser.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from service.errors import MalformedRequest, ServiceError, ValidationFailed
from service.http import arraybody
from service.oip import infer
from service.oip.codec import (
    BINARY_DATATYPES,
    INPUT_DATATYPES,
    binary_output,
    binary_response,
    binary_sections,
    inference_response,
    json_request,
    read_header,
    split_body,
    to_matrix,
)
from service.oip.schemas import InferenceRequest, RequestInput
from tests.reliability.test_hostile_input import OIP_CASES

JSON_TYPE = "application/json"

# struct's little-endian format character and size of each datatype, from the spec's table.
STRUCT_FORMATS = {
    "UINT8": "B", "UINT16": "H", "UINT32": "I", "UINT64": "Q",
    "INT8": "b", "INT16": "h", "INT32": "i", "INT64": "q",
    "FP16": "e", "FP32": "f", "FP64": "d",
}  # fmt: skip
SPEC_SIZES = {
    "UINT8": 1, "UINT16": 2, "UINT32": 4, "UINT64": 8, "INT8": 1, "INT16": 2, "INT32": 4,
    "INT64": 8, "FP16": 2, "FP32": 4, "FP64": 8,
}  # fmt: skip
# Values each type holds exactly, including the ends of the integer ranges.
VALUES: dict[str, list[Any]] = {
    "UINT8": [0, 255, 7, 1, 2, 3],
    "UINT16": [0, 65535, 7, 1, 2, 3],
    "UINT32": [0, 2**32 - 1, 7, 1, 2, 3],
    "UINT64": [0, 2**53, 7, 1, 2, 3],
    "INT8": [-128, 127, 0, 1, -1, 3],
    "INT16": [-(2**15), 2**15 - 1, 0, 1, -1, 3],
    "INT32": [-(2**31), 2**31 - 1, 0, 1, -1, 3],
    "INT64": [-(2**53), 2**53, 0, 1, -1, 3],
    "FP16": [0.5, -2.0, 65504.0, 0.099975586, 6.1035156e-05, 0.0],
    "FP32": [0.5, -2.0, 3.4028235e38, 0.1, 1e-45, -0.0],
    "FP64": [0.5, -2.0, 1e300, 0.1, 5e-324, -0.0],
}


def pack(datatype: str, values: list[Any]) -> bytes:
    return struct.pack(f"<{len(values)}{STRUCT_FORMATS[datatype]}", *values)


def binary_request(datatype: str, shape: list[int], size: int, **extra: Any) -> InferenceRequest:
    tensor = {
        "name": "input0",
        "shape": shape,
        "datatype": datatype,
        "parameters": {"binary_data_size": size},
    }
    return InferenceRequest.model_validate({"inputs": [tensor], **extra})


def decode(datatype: str, shape: list[int], data: bytes, max_rows: int = 100) -> np.ndarray:
    request = binary_request(datatype, shape, len(data))
    return to_matrix(request, max_rows, memoryview(data))


def message(error: pytest.ExceptionInfo[ServiceError]) -> str:
    assert error.value.status in (400, 422)
    return error.value.message


# -- the datatype table ------------------------------------------------------------------------


def test_binary_datatypes_are_the_json_ones_plus_fp16_with_the_spec_sizes() -> None:
    assert set(BINARY_DATATYPES) == set(INPUT_DATATYPES) | {"FP16"}
    assert {name: dtype.itemsize for name, dtype in BINARY_DATATYPES.items()} == SPEC_SIZES
    assert all(dtype.byteorder in "<|" for dtype in BINARY_DATATYPES.values())


@pytest.mark.parametrize("datatype", list(VALUES))
def test_each_datatype_decodes_little_endian_row_major(datatype: str) -> None:
    values = VALUES[datatype]
    # struct rounds to the type exactly as a client would; read it back with struct too.
    sent = struct.unpack(f"<6{STRUCT_FORMATS[datatype]}", pack(datatype, values))
    matrix = decode(datatype, [2, 3], pack(datatype, values))
    assert matrix.dtype == np.float64
    assert matrix.shape == (2, 3)
    assert matrix.tolist() == [[float(v) for v in sent[:3]], [float(v) for v in sent[3:]]]


@pytest.mark.parametrize("datatype", sorted(set(VALUES) - {"FP16"}))
def test_binary_and_json_forms_give_the_same_matrix(datatype: str) -> None:
    values = list(struct.unpack(f"<6{STRUCT_FORMATS[datatype]}", pack(datatype, VALUES[datatype])))
    as_json = InferenceRequest.model_validate(
        {"inputs": [{"name": "input0", "shape": [2, 3], "datatype": datatype, "data": values}]}
    )
    from_json = to_matrix(as_json, 100)
    from_binary = decode(datatype, [2, 3], pack(datatype, values))
    assert np.array_equal(from_json, from_binary)


@pytest.mark.parametrize("header", [b"{}      ", b"{}"])
def test_fp64_is_read_in_place_when_aligned_else_copied_once(header: bytes) -> None:
    """numpy.frombuffer over the body itself: the matrix shares the request's memory when the
    data starts on an 8-byte boundary, and is one aligned copy when it does not."""
    data = pack("FP64", [0.25] * 30)
    body = header + data
    _header, binary = split_body(body, str(len(header)))
    assert np.frombuffer(binary, dtype=np.uint8).ctypes.data % 8 == len(header) % 8  # CPython
    matrix = to_matrix(binary_request("FP64", [10, 3], len(data)), 100, binary)
    assert np.shares_memory(matrix, np.frombuffer(body, dtype=np.uint8)) == (len(header) == 8)
    assert matrix.flags.aligned
    assert matrix.sum() == 0.25 * 30


@pytest.mark.parametrize("datatype", ["BOOL", "BYTES", "BF16", "fp64", "FLOAT"])
def test_other_datatypes_are_refused_by_name(datatype: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        decode(datatype, [1, 3], b"\x00\x01\x00")
    assert f"datatype {datatype!r} is not supported" in message(caught)
    assert "FP16" in message(caught)


def test_fp16_is_refused_as_json() -> None:
    request = InferenceRequest.model_validate(
        {"inputs": [{"name": "input0", "shape": [1, 3], "datatype": "FP16", "data": [1, 0, 0]}]}
    )
    with pytest.raises(ValidationFailed) as caught:
        to_matrix(request, 100)
    assert "binary tensor data only" in message(caught)


# -- inconsistencies: each a 400 ---------------------------------------------------------------


@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64"])
@pytest.mark.parametrize("bad_value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused(datatype: str, bad_value: float) -> None:
    with pytest.raises(ValidationFailed) as caught:
        decode(datatype, [2, 3], pack(datatype, [1.0, 0.0, 0.0, 0.0, 1.0, bad_value]))
    assert "NaN or infinity" in message(caught)


@pytest.mark.parametrize(
    ("datatype", "shape", "size", "needle"),
    [
        ("FP64", [2, 3], 47, "binary_data_size 47 of 'input0' disagrees with shape [2, 3] of FP64: "
         "6 x 8 = 48 bytes"),
        ("FP64", [2, 3], 49, "6 x 8 = 48 bytes"),
        ("FP32", [2, 3], 48, "6 x 4 = 24 bytes"),
        ("FP16", [2, 3], 24, "6 x 2 = 12 bytes"),
        ("INT8", [2, 3], 0, "6 x 1 = 6 bytes"),
        ("FP64", [2, 10**12], 48, "2000000000000 x 8"),
        ("FP64", [6], 48, "[rows, n_inputs]"),
        ("FP64", [1, 2, 3], 48, "[rows, n_inputs]"),
        ("FP64", [0, 3], 0, "at least one row"),
        ("FP64", [101, 3], 101 * 24, "at most 100 rows"),
        ("FP64", [-2, -3], 48, "non-negative"),
    ],
)  # fmt: skip
def test_sizes_and_shapes_that_disagree(
    datatype: str, shape: list[int], size: int, needle: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        decode(datatype, shape, b"\x00" * size)
    assert needle in message(caught)


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("-1", "non-negative integer"),
        ("+5", "non-negative integer"),
        ("1.5", "non-negative integer"),
        ("0x10", "non-negative integer"),
        ("", "non-negative integer"),
        ("five", "non-negative integer"),
        ("\u0665", "non-negative integer"),  # an Arabic-Indic digit: int() would take it
        ("9" * 20, "non-negative integer"),
        ("0", "without its JSON header"),
        ("11", "past the end of the body (10 bytes)"),
        ("99999999999", "past the end"),
    ],
)
def test_header_lengths_that_are_refused(value: str, needle: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        split_body(b"{}" + b"\x00" * 8, value)
    assert needle in message(caught)


def test_split_body_cuts_at_the_header_length_without_copying() -> None:
    body = b'{"a": 1}' + b"\x01\x02"
    header, binary = split_body(body, "8")
    assert header == b'{"a": 1}'
    assert bytes(binary) == b"\x01\x02"
    assert binary.obj is body
    assert bytes(split_body(body, str(len(body)))[1]) == b""


def _inputs(*sizes: int | None) -> list[RequestInput]:
    return [
        RequestInput.model_validate(
            {"name": f"in{i}", "shape": [1], "datatype": "UINT8", "data": [0]}
            if size is None
            else {
                "name": f"in{i}",
                "shape": [size],
                "datatype": "UINT8",
                "parameters": {"binary_data_size": size},
            }
        )
        for i, size in enumerate(sizes)
    ]


def test_mixed_inputs_get_their_sections_in_order() -> None:
    """JSON and binary inputs mixed: each binary one takes the next binary_data_size bytes."""
    binary = memoryview(b"ab" + b"" + b"cde")
    sections = binary_sections(_inputs(None, 2, None, 0, 3, None), binary)
    assert [None if s is None else bytes(s) for s in sections] == [
        None, b"ab", None, b"", b"cde", None,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("sizes", "binary", "needle"),
    [
        ((2, 3), b"abcd", "input 'in1' has binary_data_size 3, but only 2 bytes"),
        ((2,), b"abcd", "2 bytes after the JSON header belong to no input"),
        ((None,), b"x", "1 bytes after the JSON header belong to no input"),
        ((None, None), b"", None),
    ],
)
def test_missing_and_extra_sections(
    sizes: tuple[int | None, ...], binary: bytes, needle: str | None
) -> None:
    if needle is None:
        assert binary_sections(_inputs(*sizes), memoryview(binary)) == [None, None]
        return
    with pytest.raises(ValidationFailed) as caught:
        binary_sections(_inputs(*sizes), memoryview(binary))
    assert needle in message(caught)


@pytest.mark.parametrize("size", [True, 1.5, -1, "8", 2**70])
def test_binary_data_size_must_be_a_fitting_non_negative_integer(size: Any) -> None:
    tensor = RequestInput.model_validate(
        {"name": "input0", "shape": [1, 1], "datatype": "FP64",
         "parameters": {"binary_data_size": size}}
    )  # fmt: skip
    with pytest.raises(ValidationFailed) as caught:
        binary_sections([tensor], memoryview(b"\x00" * 8))
    assert "binary_data_size" in message(caught)


def test_binary_data_size_without_the_header_is_refused() -> None:
    with pytest.raises(ValidationFailed) as caught:
        to_matrix(binary_request("FP64", [1, 3], 24), 100, None)
    assert "no Inference-Header-Content-Length header" in message(caught)


def test_both_json_data_and_binary_data_is_refused() -> None:
    request = InferenceRequest.model_validate(
        {"inputs": [{"name": "input0", "shape": [1, 3], "datatype": "FP64", "data": [1, 0, 0],
                     "parameters": {"binary_data_size": 24}}]}
    )  # fmt: skip
    with pytest.raises(ValidationFailed) as caught:
        to_matrix(request, 100, memoryview(pack("FP64", [1.0, 0.0, 0.0])))
    assert "both JSON data and binary_data_size" in message(caught)


# -- the JSON header: as strict as a JSON body -------------------------------------------------


@pytest.mark.parametrize(
    ("header", "needle"),
    [
        (b'{"inputs": [], "inputs": []}', "repeats the key 'inputs'"),
        (b'{"inputs": [{"name": "a", "name": "b"}]}', "repeats the key 'name'"),
        (b'{"parameters": {"binary_data_size": 8, "binary_data_size": 16}}', "repeats the key"),
        (b'{"inputs": [NaN]}', "not valid JSON"),
        (b'{"inputs": [1e400]}', "not valid JSON"),
        (b'{"a": "\xff"}', "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
)
def test_the_json_header_is_read_strictly(header: bytes, needle: str) -> None:
    with pytest.raises(MalformedRequest) as caught:
        read_header(header)
    assert caught.value.status == 400
    assert needle in caught.value.message


def test_a_header_with_escaped_quotes_and_no_duplicates_is_read() -> None:
    header = b'{"id": "a\\"b", "inputs": [{"name": "input0", "x\\"y": 1}]}'
    assert read_header(header) == orjson.loads(header)


# -- outputs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_parameters", "output_parameters", "expected"),
    [
        (None, None, False),
        ({"binary_data_output": True}, None, True),
        ({"binary_data_output": False}, None, False),
        ({"binary_data_output": True}, {"binary_data": False}, False),
        ({"binary_data_output": False}, {"binary_data": True}, True),
        (None, {"binary_data": True}, True),
        (None, {"datatype": "FP32"}, False),
    ],
)
def test_binary_output_follows_the_spec_precedence(
    request_parameters: dict | None, output_parameters: dict | None, expected: bool
) -> None:
    body: dict[str, Any] = {"inputs": [{"name": "input0", "shape": [1], "datatype": "FP64"}]}
    if request_parameters is not None:
        body["parameters"] = request_parameters
    if output_parameters is not None:
        body["outputs"] = [{"name": "output0", "parameters": output_parameters}]
    assert binary_output(InferenceRequest.model_validate(body)) is expected


@pytest.mark.parametrize("value", [1, "true", 0.0])
def test_binary_flags_must_be_booleans(value: Any) -> None:
    for body in (
        {"parameters": {"binary_data_output": value}},
        {"outputs": [{"name": "output0", "parameters": {"binary_data": value}}]},
    ):
        request = InferenceRequest.model_validate(
            {"inputs": [{"name": "input0", "shape": [1], "datatype": "FP64"}], **body}
        )
        with pytest.raises(ValidationFailed) as caught:
            binary_output(request)
        assert "must be true or false" in message(caught)


@pytest.mark.parametrize(("datatype", "fmt"), [("FP64", "d"), ("FP32", "f")])
def test_binary_response_is_json_then_little_endian_bytes(datatype: str, fmt: str) -> None:
    request = InferenceRequest.model_validate(
        {"id": "7", "inputs": [{"name": "input0", "shape": [1], "datatype": "FP64"}]}
    )
    probabilities = np.array([0.1, 0.25, 0.9999370428352157])
    body, length = binary_response(request, probabilities, 3, datatype)
    size = 3 * struct.calcsize(fmt)
    assert len(body) == length + size
    header = orjson.loads(body[:length])
    assert header == {
        "model_name": "neuron",
        "model_version": "3",
        "id": "7",
        "outputs": [
            {
                "name": "output0",
                "shape": [3, 1],
                "datatype": datatype,
                "parameters": {"binary_data_size": size},
            }
        ],
    }
    values = struct.unpack(f"<3{fmt}", body[length:])
    expected = [
        struct.unpack(f"<{fmt}", struct.pack(f"<{fmt}", p))[0]
        for p in (0.1, 0.25, 0.9999370428352157)
    ]
    assert list(values) == expected
    # And as the most common client reads it.
    result = httpclient.InferResult.from_response_body(body, header_length=length)
    assert result.as_numpy("output0")[:, 0].tolist() == expected
    # The JSON form of the same answer carries the same numbers.
    as_json = orjson.loads(
        orjson.dumps(
            inference_response(request, probabilities, 3, datatype),
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
    )
    assert np.array_equal(
        np.array(as_json["outputs"][0]["data"], dtype=result.as_numpy("output0").dtype),
        result.as_numpy("output0")[:, 0],
    )


# -- JSON tensors read by the numbers-only fast path (json_request) ------------------------------


def _general(body: bytes, max_rows: int = 8) -> tuple[InferenceRequest, Any] | None:
    """The general reading: jsonbody, pydantic, to_matrix; None where it refuses the body."""
    try:
        request = InferenceRequest.model_validate(read_header(body))
        return request, to_matrix(request, max_rows)
    except (ServiceError, ValidationError):
        return None


def _check_json_request(body: bytes, max_rows: int = 8) -> bool:
    """json_request declines, or gives the general reading's matrix bit for bit."""
    slow = _general(body, max_rows)
    for threshold in (arraybody._SMALL, 0):  # orjson and simdjson
        small, arraybody._SMALL = arraybody._SMALL, threshold
        try:
            fast = json_request(body, max_rows)
        finally:
            arraybody._SMALL = small
        if fast is not None:
            assert slow is not None, body
            assert fast[1].shape == slow[1].shape and fast[1].tobytes() == slow[1].tobytes()
            assert fast[0].model_dump(exclude={"inputs"}) == slow[0].model_dump(exclude={"inputs"})
            assert fast[0].inputs[0].data == [] and slow[0].inputs[0].data
    return fast is not None


_numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(2**66), 2**66).map(str),
    st.sampled_from(["true", "null", '"1"', "NaN", "1e999", "01", "1.", "-", "[1]", "1e-400"]),
)


@st.composite
def _v2_bodies(draw: st.DrawFn) -> bytes:
    rows, width = draw(st.integers(0, 4)), draw(st.integers(0, 4) | st.just(3))
    count = rows * width + draw(st.sampled_from([0, 0, 0, 0, 1, -1]))
    valid = st.one_of(_numbers.filter(lambda n: n[0] in "-0123456789" and n != "-"))
    numbers = _numbers if draw(st.integers(0, 4)) == 0 else valid
    data = "[" + ", ".join(draw(numbers) for _ in range(max(count, 0))) + "]"
    dtype = draw(st.sampled_from(["FP64"] * 6 + ["FP32", "INT32", "UINT8", "FP16", "BOOL"]))
    name = draw(st.sampled_from(["input0"] * 5 + ["x"]))
    tensor = f'"name": "{name}", "shape": [{rows}, {width}], "datatype": "{dtype}", "data": {data}'
    extra = draw(st.sampled_from([""] * 8 + [', "data": [1]', ', "parameters": {"a": 1}']))
    outer = draw(st.sampled_from([""] * 6 + [', "id": "r1"', ', "data": [1]', ', "inputs": []']))
    return f'{{"inputs": [{{{tensor}{extra}}}]{outer}}}'.encode()


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_v2_bodies())
def test_json_tensors_are_declined_or_read_as_the_general_way_reads_them(body: bytes) -> None:
    _taken.append(_check_json_request(body))


_taken: list[bool] = []


def test_the_property_above_took_the_fast_path_often() -> None:
    """Runs after it: the generator is not vacuous."""
    assert sum(_taken) > 20 and len(_taken) - sum(_taken) > 20, (sum(_taken), len(_taken))


def test_the_json_tensor_fast_path_is_taken() -> None:
    rows = np.random.default_rng(2).random((600, 3))
    for datatype in ("FP64", "FP32"):
        tensor = {"name": "input0", "shape": [600, 3], "datatype": datatype, "data": rows.ravel()}
        body = orjson.dumps({"inputs": [tensor]}, option=orjson.OPT_SERIALIZE_NUMPY)
        assert _check_json_request(body, max_rows=600)
    one = {"name": "input0", "shape": [1, 3], "datatype": "FP64", "data": [1, 0.5, -0.0]}
    assert _check_json_request(orjson.dumps({"inputs": [one]}))


def test_the_service_answers_v2_json_as_without_the_fast_path(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Status and body of each /v2 JSON case of the hostile-input table, the same either way."""
    bodies = [body for _, body, _ in OIP_CASES] + [
        orjson.dumps({"inputs": [{"name": "input0", "shape": [2, 3], "datatype": dt, "data": d}]})
        for dt in ("FP64", "FP32", "INT8")
        for d in ([1, 0, 0, 0, 0, 1], [1, 0, 0, 0, 0], [1e300, 0, 0, 0, 0, 1])
    ]

    def answers() -> list[tuple[int, bytes]]:
        out = []
        for body in bodies:
            response = client.post("/v2/models/neuron/infer", data=body, content_type=JSON_TYPE)
            out.append((response.status_code, response.data))
        return out

    taken: list[bool] = []
    real = infer.json_request
    monkeypatch.setattr(infer, "json_request", lambda *a: taken.append(bool(r := real(*a))) or r)
    with_fast_path = answers()
    monkeypatch.setattr(infer, "json_request", lambda *a: None)
    assert answers() == with_fast_path
    assert sum(taken) >= 3
