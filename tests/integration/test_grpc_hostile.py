"""Hand-built hostile ModelInfer messages through a raw grpcio client, against real gunicorn.

Each gets a clean status with REST's message for the same tensor (its REST twin: the binary
infer carrying the same bytes, or the JSON one carrying the same numbers), and no worker dies.
"""

from __future__ import annotations

import json
import math
from typing import Any

import grpc
import numpy as np
import pytest

from service.oip.rpc import grpc_predict_v2_pb2 as pb
from tests.binary_cases import CASES, HEADER, INFER

from . import grpcmsg
from .grpcmsg import Tensor, raw_request, refusal, rest_twin, typed_request
from .server import Gunicorn

INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
ROWS = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
NAN_ROWS = np.array([[1.0, math.nan, 0.0]])


def _two_inputs() -> pb.ModelInferRequest:
    message = raw_request(ROWS)
    message.inputs.append(Tensor(name="input1", datatype="FP64", shape=[2, 3]))
    message.raw_input_contents.append(ROWS.tobytes())
    return message


# (id, message): raw tensors, each answered as its REST binary twin is.
RAW_CASES: list[tuple[str, pb.ModelInferRequest]] = [
    ("wrong width", raw_request(ROWS[:, :2])),
    ("shape not 2-D", raw_request(ROWS, shape=[6])),
    ("negative shape", raw_request(ROWS, shape=[-2, -3])),
    ("no rows", raw_request(b"", shape=[0, 3])),
    ("size mismatch", raw_request(ROWS.tobytes()[:-8], shape=[2, 3])),
    ("size past the shape", raw_request(ROWS.tobytes() + b"\0" * 8, shape=[2, 3])),
    ("unknown datatype", raw_request(ROWS, datatype="FP128")),
    ("BOOL", raw_request(b"\1" * 6, shape=[2, 3], datatype="BOOL")),
    ("BYTES", raw_request(b"abcdef", shape=[2, 3], datatype="BYTES")),
    ("NaN", raw_request(NAN_ROWS)),
    ("infinity as FP32", raw_request(np.array([[1, np.inf, 0]], dtype=np.float32), datatype="FP32")),
    ("too many rows", raw_request(np.zeros((10_001, 3)))),
    ("two inputs", _two_inputs()),
    ("unknown model", raw_request(ROWS, model_name="iris")),
    ("unknown version", raw_request(ROWS, model_version="7")),
    ("malformed version", raw_request(ROWS, model_version="v1")),
]  # fmt: skip


@pytest.fixture(scope="module")
def workers(shared_server: Gunicorn) -> set[int]:
    """The workers before any hostile call: the same ones must be there after."""
    return shared_server.worker_pids()


@pytest.mark.parametrize("message", [m for _, m in RAW_CASES], ids=[i for i, _ in RAW_CASES])
def test_a_hostile_raw_tensor_gets_rests_message(
    shared_server: Gunicorn, workers: set[int], message: pb.ModelInferRequest
) -> None:
    path, body, headers = rest_twin(message)
    rest = shared_server.post(path, data=body, headers=headers)
    assert rest.status_code in (400, 404), rest.text
    code, details = refusal(shared_server.grpc_target, message)
    assert code == (NOT_FOUND if rest.status_code == 404 else INVALID)
    assert details == rest.json()["error"]


# (id, message, the REST JSON request carrying the same numbers)
def _json(values: list[Any], shape: list[int], datatype: str) -> dict[str, Any]:
    return {"inputs": [{"name": "input0", "shape": shape, "datatype": datatype, "data": values}]}


TYPED_CASES = [
    ("INT8 out of range", "int_contents", [1, 300, 0], [1, 3], "INT8"),
    ("UINT8 out of range", "uint_contents", [1, 256, 0], [1, 3], "UINT8"),
    ("count mismatch", "fp64_contents", [1.0, 0.0], [1, 3], "FP64"),
    ("FP32 overflow", "fp64_contents", [1e300, 0.0, 0.0], [1, 3], "FP32"),
    ("BOOL", "bool_contents", [True, False, True], [1, 3], "BOOL"),
    ("FP16 typed", "fp32_contents", [1.0, 0.0, 0.0], [1, 3], "FP16"),
    ("wrong width", "fp64_contents", [1.0, 0.0], [1, 2], "FP64"),
]


@pytest.mark.parametrize(
    ("field", "values", "shape", "datatype"),
    [c[1:] for c in TYPED_CASES],
    ids=[c[0] for c in TYPED_CASES],
)
def test_hostile_typed_contents_get_rests_message(
    shared_server: Gunicorn, field: str, values: list[Any], shape: list[int], datatype: str
) -> None:
    if datatype == "FP32" and field == "fp64_contents":  # FP32 travels in fp32_contents...
        field = "fp32_contents"  # ...where 1e300 becomes inf on the wire: REST's too big
    rest = shared_server.post("/v2/models/neuron/infer", _json(values, shape, datatype))
    assert rest.status_code == 400, rest.text
    code, details = refusal(
        shared_server.grpc_target, typed_request(field, values, shape, datatype)
    )
    assert code == INVALID
    assert details == rest.json()["error"]


def test_typed_nan_is_refused_as_rest_refuses_a_non_finite_value(shared_server: Gunicorn) -> None:
    # JSON cannot carry NaN (REST refuses it as malformed); the typed check is the codec's.
    message = typed_request("fp64_contents", [1.0, math.nan, 0.0], [1, 3])
    assert refusal(shared_server.grpc_target, message) == (
        INVALID, "every value must be a finite number within the range of the datatype",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m.inputs[0].contents.fp64_contents.extend([1.0] * 6), "has both contents and raw_input_contents"),
        (lambda m: m.raw_input_contents.append(b"x"), "raw_input_contents holds 2 tensors for 1 inputs"),
        (lambda m: m.inputs[0].ClearField("datatype"), "datatype '' is not supported"),
        (lambda m: m.parameters["x"].SetInParent(), "parameter 'x' has no bool, int64 or string value"),
    ],
    ids=["contents and raw", "two raw for one input", "no datatype", "empty parameter"],
)  # fmt: skip
def test_grpc_only_defects_are_invalid_argument(
    shared_server: Gunicorn, mutate: Any, message: str
) -> None:
    sent = raw_request(ROWS)
    mutate(sent)
    code, details = refusal(shared_server.grpc_target, sent)
    assert code == INVALID
    assert message in details


def test_typed_contents_in_the_wrong_field_are_named(shared_server: Gunicorn) -> None:
    code, details = refusal(
        shared_server.grpc_target, typed_request("int_contents", [1, 0, 0], [1, 3], "FP64")
    )
    assert code == INVALID
    assert details == (
        "input 'input0' of datatype 'FP64' carries its data in fp64_contents, not in int_contents"
    )


def test_no_inputs_gets_rests_message(shared_server: Gunicorn) -> None:
    rest = shared_server.post("/v2/models/neuron/infer", {"inputs": []})
    code, details = refusal(shared_server.grpc_target, pb.ModelInferRequest(model_name="neuron"))
    assert (code, details) == (INVALID, rest.json()["error"])


def test_an_oversized_message_is_refused_by_its_size(shared_server: Gunicorn) -> None:
    # The default body limit, 4 MiB, plus a row: more than NEURON_MAX_BODY_BYTES of message.
    too_big = raw_request(np.zeros((4 * 1024 * 1024 // 24 + 1, 3)))
    code, details = refusal(shared_server.grpc_target, too_big)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in details
    assert shared_server.log().count("Traceback") == 0


def test_no_worker_died_and_both_transports_still_answer(
    shared_server: Gunicorn, workers: set[int]
) -> None:
    assert shared_server.worker_pids() == workers
    answer = grpcmsg.infer(shared_server.grpc_target, raw_request(ROWS))
    rest = shared_server.post("/predict", {"inputs": ROWS.tolist()}).json()["predictions"]
    assert np.array_equal(grpcmsg.outputs(answer), rest)
    assert "Traceback" not in shared_server.log()


def test_grpc_calls_are_counted_by_status_and_logged(shared_server: Gunicorn) -> None:
    target = shared_server.grpc_target
    grpcmsg.infer(target, raw_request(ROWS))
    refusal(target, raw_request(ROWS[:, :2]))
    refusal(target, raw_request(ROWS, model_name="iris"))
    metrics = shared_server.get("/metrics").text
    endpoint = "/inference.GRPCInferenceService/ModelInfer"
    for status in ("200", "400", "404"):
        series = (
            f'neuron_http_request_duration_seconds_count{{endpoint="{endpoint}",'
            f'method="GRPC",status="{status}"}}'
        )
        assert series in metrics
    lines = [line for line in shared_server.log_lines() if line.get("endpoint") == endpoint]
    assert {line["status"] for line in lines} >= {200, 400, 404}
    assert all(line["method"] == "GRPC" and len(line["request_id"]) == 32 for line in lines)


def _grpc_twin(body: bytes, headers: dict[str, str]) -> pb.ModelInferRequest | None:
    """The ModelInfer carrying the same tensors as a binary REST body; None if gRPC cannot
    say it (a malformed header or length, a body-level model name: the parts gRPC has not)."""
    length = headers.get(HEADER, "")
    if not length.isdigit() or not 0 < int(length) <= len(body):
        return None
    if headers.get("Content-Type", "application/octet-stream") != "application/octet-stream":
        return None  # a media type is HTTP's: gRPC has none to get wrong
    try:
        header = json.loads(body[: int(length)], parse_constant=_refuse, object_pairs_hook=_once)
    except ValueError:
        return None
    if not isinstance(header, dict) or not set(header) <= {"inputs", "id"}:
        return None
    message, data = (
        pb.ModelInferRequest(model_name="neuron", id=header.get("id", "")),
        body[int(length) :],
    )
    for t in header.get("inputs") or [None]:
        if not isinstance(t, dict) or set(t) != {"name", "shape", "datatype", "parameters"}:
            return None
        size = t["parameters"].get("binary_data_size")
        if (
            set(t["parameters"]) != {"binary_data_size"}
            or type(size) is not int
            or not 0 <= size <= len(data)
        ):
            return None
        if not all(type(n) is int and abs(n) < 2**63 for n in t["shape"]):
            return None
        message.inputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        message.raw_input_contents.append(data[:size])
        data = data[size:]
    return None if data else message


def _refuse(constant: str) -> None:
    raise ValueError(constant)


def _once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all distinct (protobuf fields cannot repeat a key)."""
    if len({key for key, _ in pairs}) != len(pairs):
        raise ValueError("duplicate key")
    return dict(pairs)


TWINS = [
    (name, body, headers, twin)
    for name, (body, headers), _ in CASES
    if (twin := _grpc_twin(body, headers)) is not None
]


def test_most_of_the_binary_table_has_a_grpc_twin() -> None:
    assert len(TWINS) >= 25, [name for name, *_ in TWINS]


@pytest.mark.parametrize(
    ("body", "headers", "twin"), [t[1:] for t in TWINS], ids=[t[0] for t in TWINS]
)
def test_the_binary_table_answers_alike_over_grpc(
    shared_server: Gunicorn, body: bytes, headers: dict[str, str], twin: pb.ModelInferRequest
) -> None:
    """tests/binary_cases.py's requests that gRPC can carry: the same answer or the same error."""
    rest = shared_server.post(INFER, data=body, headers=headers)
    if rest.status_code == 200:
        answer = grpcmsg.infer(shared_server.grpc_target, twin)
        assert np.array_equal(grpcmsg.outputs(answer), rest.json()["outputs"][0]["data"])
        assert answer.id == rest.json().get("id", "")
        return
    code, details = refusal(shared_server.grpc_target, twin)
    assert code == (NOT_FOUND if rest.status_code == 404 else INVALID)
    assert details == rest.json()["error"]
