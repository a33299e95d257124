"""The Open Inference Protocol (KServe V2 REST) adapter through Flask's test client.

The SPEC_* constants are the protocol's own examples, re-typed from the REST specification
(kserve/open-inference-protocol, specification/protocol/inference_rest.md): the inference
request and response examples, the tensor-data example (natural and flattened forms of one
matrix) and the table of tensor data types.
"""

from __future__ import annotations

import copy
from math import prod
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from flask.testing import FlaskClient
from openapi_spec_validator import validate as validate_openapi

from service.app import create_app, documented_statuses
from service.app import openapi_document as document
from service.model.neuron import Neuron
from service.oip.schemas import InferenceRequest, ResponseOutput
from service.settings import Settings

from .binary_cases import binary, rows
from .binary_cases import tensor as binary_tensor
from .conftest import AUTH
from .metrics_text import sample

# -- the specification's examples ---------------------------------------------------------------

SPEC_REQUEST: dict[str, Any] = {
    "id": "42",
    "inputs": [
        {"name": "input0", "shape": [2, 2], "datatype": "UINT32", "data": [1, 2, 3, 4]},
        {"name": "input1", "shape": [3], "datatype": "BOOL", "data": [True]},
    ],
    "outputs": [{"name": "output0"}],
}
SPEC_RESPONSE: dict[str, Any] = {
    "id": "42",
    "outputs": [
        {
            "name": "output0",
            "shape": [3, 2],
            "datatype": "FP32",
            "data": [1.0, 1.1, 2.0, 2.1, 3.0, 3.1],
        }
    ],
}
SPEC_MATRIX_NATURAL = [[1, 2], [4, 5]]
SPEC_MATRIX_FLAT = [1, 2, 4, 5]
SPEC_DATATYPES = {
    "BOOL": 1, "UINT8": 1, "UINT16": 2, "UINT32": 4, "UINT64": 8, "INT8": 1, "INT16": 2,
    "INT32": 4, "INT64": 8, "FP16": 2, "FP32": 4, "FP64": 8, "BYTES": None,
}  # fmt: skip
ACCEPTED = {
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP32",
    "FP64",
}

INFER = "/v2/models/neuron/infer"
INFER_TEMPLATE = "/v2/models/{model_name}/infer"
TWO_INPUTS = {"inputs": [[0, 1], [1, 0], [1, 1], [0, 0]], "targets": [0, 1, 1, 0]}


def tensor(data: Any, shape: list[int], datatype: str = "FP64", name: str = "input0") -> dict:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def infer_body(*tensors: dict, **extra: Any) -> dict:
    return {"inputs": list(tensors), **extra}


def assert_protocol_error(response: Any, status: int, path: str, method: str) -> str:
    """The spec's error object: exactly {"error": <string>}, with a documented status."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in body["error"]
    assert status in documented_statuses(path, method)
    return str(body["error"])


def retrain_to_two_inputs(client: FlaskClient) -> int:
    response = client.post("/admin/retrain", json=TWO_INPUTS, headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    return int(response.get_json()["model_version"])


def predict(client: FlaskClient, rows: list[list[float]]) -> list[float]:
    response = client.post("/predict", json={"inputs": rows})
    assert response.status_code == 200
    return list(response.get_json()["predictions"])


# -- the spec's examples against this server ----------------------------------------------------


def test_spec_request_example_is_answered_by_a_model_of_its_shape(client: FlaskClient) -> None:
    """The example's input0 (a [2, 2] UINT32 tensor) fits a two-input model exactly."""
    version = retrain_to_two_inputs(client)
    request = copy.deepcopy(SPEC_REQUEST)
    del request["inputs"][1]  # input1 is BOOL, which this model refuses (tested below)
    response = client.post(INFER, json=request)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["model_name"] == "neuron"
    assert body["model_version"] == str(version)
    assert body["id"] == "42"
    [output] = body["outputs"]
    assert output["name"] == "output0"
    assert output["datatype"] == "FP64"
    assert output["shape"] == [2, 1]
    # The same core as /predict: the very same numbers.
    assert output["data"] == predict(client, [[1, 2], [3, 4]])


def test_spec_request_example_as_written_is_refused_for_its_bool_input(
    client: FlaskClient,
) -> None:
    retrain_to_two_inputs(client)
    error = assert_protocol_error(
        client.post(INFER, json=SPEC_REQUEST), 400, INFER_TEMPLATE, "post"
    )
    assert "input1" in error


# -- one input of any name, as KServe's and MLServer's examples send it ------------------------

EXAMPLE_ROWS = [[1.0, 0.0, 0.0], [0.5, 0.25, 1.0]]  # exact in FP32
EXAMPLE_FLAT = [value for row in EXAMPLE_ROWS for value in row]


@pytest.mark.parametrize(
    "request_input",
    [
        # KServe's V2 scikit-learn example: its own name, FP32 rows as nested lists
        {"name": "input-0", "shape": [2, 3], "datatype": "FP32", "data": EXAMPLE_ROWS},
        # MLServer's scikit-learn example: the name of the method it calls
        {"name": "predict", "shape": [2, 3], "datatype": "FP32", "data": EXAMPLE_ROWS},
        {"name": "", "shape": [2, 3], "datatype": "FP64", "data": EXAMPLE_FLAT},
    ],
    ids=["kserve input-0", "mlserver predict", "empty name, flat FP64"],
)
def test_one_input_of_any_name_is_answered_as_predict(
    client: FlaskClient, request_input: dict[str, Any]
) -> None:
    response = client.post(INFER, json={"inputs": [request_input]})
    assert response.status_code == 200, response.get_data(as_text=True)
    [output] = response.get_json()["outputs"]
    assert output["name"] == "output0"
    assert output["data"] == predict(client, EXAMPLE_ROWS)
    [advertised] = client.get("/v2/models/neuron").get_json()["inputs"]
    assert advertised["name"] == "input0"


def test_one_binary_input_of_any_name_is_answered_as_predict(client: FlaskClient) -> None:
    header = {"inputs": [binary_tensor([2, 3], 48, name="input-0")]}
    body, headers = binary(header, rows(*EXAMPLE_FLAT))
    response = client.post(INFER, data=body, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    [output] = response.get_json()["outputs"]
    assert output["data"] == predict(client, EXAMPLE_ROWS)


def test_spec_request_example_to_its_model_name_is_a_404(client: FlaskClient) -> None:
    response = client.post("/v2/models/mymodel/infer", json=SPEC_REQUEST)
    error = assert_protocol_error(response, 404, INFER_TEMPLATE, "post")
    assert "mymodel" in error


def test_spec_request_example_fits_our_request_schema() -> None:
    parsed = InferenceRequest.model_validate(SPEC_REQUEST)
    assert parsed.id == "42"
    assert [t.name for t in parsed.inputs] == ["input0", "input1"]
    assert parsed.outputs is not None and parsed.outputs[0].name == "output0"


def test_our_response_has_the_form_of_the_spec_response_example(client: FlaskClient) -> None:
    ResponseOutput.model_validate(SPEC_RESPONSE["outputs"][0])
    rows = [[1, 0, 0], [0, 1, 1], [1, 1, 0]]
    request = infer_body(
        tensor(rows, [3, 3]),
        id="42",
        outputs=[{"name": "output0", "parameters": {"datatype": "FP32"}}],
    )
    body = client.post(INFER, json=request).get_json()
    assert set(SPEC_RESPONSE) <= set(body)
    [ours], [theirs] = body["outputs"], SPEC_RESPONSE["outputs"]
    assert set(ours) == set(theirs)
    for output in (ours, theirs):
        assert output["datatype"] == "FP32"
        assert len(output["data"]) == prod(output["shape"])
    expected = predict(client, rows)
    assert np.array_equal(np.float32(ours["data"]), np.float32(expected))
    assert ours["data"] != expected  # written as FP32, not as the FP64 numbers


@pytest.mark.parametrize("data", [SPEC_MATRIX_NATURAL, SPEC_MATRIX_FLAT], ids=["natural", "flat"])
def test_spec_tensor_data_example_in_both_forms(client: FlaskClient, data: list) -> None:
    retrain_to_two_inputs(client)
    response = client.post(INFER, json=infer_body(tensor(data, [2, 2], "INT32")))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["outputs"][0]["data"] == predict(client, SPEC_MATRIX_NATURAL)


@pytest.mark.parametrize("datatype", list(SPEC_DATATYPES))
def test_spec_datatype_table(client: FlaskClient, datatype: str) -> None:
    """Every numeric type of the spec's table is taken as input; BOOL, BYTES and FP16 are not."""
    response = client.post(INFER, json=infer_body(tensor([1, 0, 0, 0, 1, 1], [2, 3], datatype)))
    if datatype in ACCEPTED:
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["outputs"][0]["data"] == predict(client, [[1, 0, 0], [0, 1, 1]])
    else:
        error = assert_protocol_error(response, 400, INFER_TEMPLATE, "post")
        assert datatype in error


# -- health and metadata ------------------------------------------------------------------------


def test_health_and_server_metadata(client: FlaskClient) -> None:
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").get_json() == {"ready": True}
    for path in ("/v2", "/v2/"):
        response = client.get(path)
        assert response.status_code == 200
        body = response.get_json()
        assert body["name"] == "neuron-service"
        assert isinstance(body["version"], str)
        assert body["extensions"] == ["binary_tensor_data"]


def test_model_metadata_and_readiness(client: FlaskClient) -> None:
    body = client.get("/v2/models/neuron").get_json()
    assert body == {
        "name": "neuron",
        "versions": ["1"],
        "platform": "numpy",
        "inputs": [{"name": "input0", "datatype": "FP64", "shape": [-1, 3]}],
        "outputs": [{"name": "output0", "datatype": "FP64", "shape": [-1, 1]}],
    }
    assert client.get("/v2/models/neuron/versions/1").get_json() == body
    assert client.get("/v2/models/neuron/ready").get_json() == {"name": "neuron", "ready": True}
    ready = client.get("/v2/models/neuron/versions/1/ready")
    assert ready.get_json() == {"name": "neuron", "ready": True}


def test_kept_versions_can_be_asked_for(client: FlaskClient) -> None:
    first = np.array(client.get("/model").get_json()["weights"]).reshape(-1, 1)
    version = retrain_to_two_inputs(client)
    assert version == 2
    assert client.get("/v2/models/neuron").get_json()["versions"] == ["2", "1"]
    old = client.get("/v2/models/neuron/versions/1").get_json()
    new = client.get("/v2/models/neuron/versions/2").get_json()
    assert old["inputs"][0]["shape"] == [-1, 3]
    assert new["inputs"][0]["shape"] == [-1, 2]

    rows = [[1, 0, 0], [0, 1, 1]]
    body = client.post("/v2/models/neuron/versions/1/infer", json=infer_body(tensor(rows, [2, 3])))
    assert body.status_code == 200, body.get_data(as_text=True)
    answer = body.get_json()
    assert answer["model_version"] == "1"
    assert answer["outputs"][0]["data"] == Neuron(first)(np.array(rows, dtype=float)).tolist()
    # Unversioned requests go to the serving version, which takes two inputs.
    serving = client.post(INFER, json=infer_body(tensor([1, 0], [1, 2]))).get_json()
    assert serving["model_version"] == "2"
    wrong = client.post(INFER, json=infer_body(tensor(rows, [2, 3])))
    assert "2 numbers" in assert_protocol_error(wrong, 400, INFER_TEMPLATE, "post")


def test_model_name_and_version_in_the_body_must_agree_with_the_url(client: FlaskClient) -> None:
    rows = tensor([1, 0, 0], [1, 3])
    agreeing = infer_body(rows, id="k1", model_name="neuron", model_version="1")
    plain = client.post(INFER, json=infer_body(rows, id="k1")).get_json()
    assert client.post(INFER, json=agreeing).get_json() == plain
    versioned = "/v2/models/neuron/versions/1/infer"
    assert client.post(versioned, json=agreeing).get_json() == plain
    retrain_to_two_inputs(client)
    # Version 1 is kept but no longer serves: the body must now say what answers.
    old = client.post(INFER, json=infer_body(tensor([1, 0], [1, 2]), model_version="1"))
    message = assert_protocol_error(old, 400, INFER_TEMPLATE, "post")
    assert message.endswith("which names the serving version '2'")
    assert client.post(versioned, json=agreeing).get_json() == plain
    two = client.post(versioned, json=infer_body(rows, model_version="2"))
    assert assert_protocol_error(two, 400, INFER_TEMPLATE, "post") == (
        "model_version '2' in the body does not agree with the URL, which names version '1'"
    )


def test_unknown_fields_are_ignored_as_kserve_mlserver_and_triton_do(client: FlaskClient) -> None:
    plain = client.post(INFER, json=infer_body(tensor([1, 0, 0], [1, 3]))).get_json()
    body = infer_body(
        {**tensor([1, 0, 0], [1, 3]), "contents": {"fp64_contents": [0, 0, 0]}, "x": None},
        outputs=[{"name": "output0", "classification": 2}],
        model_name="neuron",
        sequence_id=3,
        nested={"a": [1, {"b": 2}]},
    )
    assert client.post(INFER, json=body).get_json() == plain


# -- request details ----------------------------------------------------------------------------


def test_id_is_echoed_only_when_given(client: FlaskClient) -> None:
    rows = tensor([1, 0, 0], [1, 3])
    assert client.post(INFER, json=infer_body(rows, id="abc")).get_json()["id"] == "abc"
    assert "id" not in client.post(INFER, json=infer_body(rows)).get_json()


def test_parameters_are_accepted_and_binary_data_false_gets_json(client: FlaskClient) -> None:
    body = infer_body(
        tensor([1, 0, 0], [1, 3]),
        parameters={"binary_data_output": True, "priority": 1, "tag": "x"},
        outputs=[{"name": "output0", "parameters": {"binary_data": False}}],
    )
    response = client.post(INFER, json=body)
    assert response.status_code == 200
    assert "Inference-Header-Content-Length" not in response.headers
    assert response.get_json()["outputs"][0]["data"] == predict(client, [[1, 0, 0]])


def test_no_content_type_is_json_as_tritonclient_sends_it(client: FlaskClient) -> None:
    data = (
        b'{"inputs": [{"name": "input0", "shape": [1, 3], "datatype": "FP64", "data": [1, 0, 0]}]}'
    )
    response = client.post(INFER, data=data)
    assert response.status_code == 200
    assert response.get_json()["outputs"][0]["shape"] == [1, 1]


def test_fp32_inputs_are_rounded_to_fp32(client: FlaskClient) -> None:
    value = 0.1  # not exact in FP32
    response = client.post(INFER, json=infer_body(tensor([value, 1, 0], [1, 3], "FP32")))
    expected = predict(client, [[float(np.float32(value)), 1, 0]])
    assert response.get_json()["outputs"][0]["data"] == expected
    assert expected != predict(client, [[value, 1, 0]])


@pytest.mark.parametrize(
    ("datatype", "row"),
    [
        ("INT8", [-128, 127, 0]),
        ("UINT8", [255, 0, 1]),
        ("INT64", [-(2**63), 2**63 - 1, 0]),
        ("UINT64", [2**64 - 1, 0, 0]),
        ("FP32", [3.4e38, -3.4e38, 1e-45]),
        ("FP64", [1e300, -1e300, 5e-324]),
    ],
)
def test_the_ends_of_each_range_are_taken(client: FlaskClient, datatype: str, row: list) -> None:
    response = client.post(INFER, json=infer_body(tensor(row, [1, 3], datatype)))
    assert response.status_code == 200, response.get_data(as_text=True)
    [probability] = response.get_json()["outputs"][0]["data"]
    assert 0.0 <= probability <= 1.0


def _bad(**changes: Any) -> dict:
    body = infer_body(tensor([[1, 0, 0], [0, 1, 1]], [2, 3]))
    body["inputs"][0].update(changes)
    return body


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (_bad(shape=[3, 3], data=[1, 0, 0, 0, 1, 1]), "9 elements but data has 6"),
        (_bad(shape=[2, 3], data=[1, 0, 0, 0, 1]), "6 elements but data has 5"),
        (_bad(shape=[3, 2]), "does not follow shape"),
        (_bad(shape=[6]), "[rows, n_inputs]"),
        (_bad(shape=[1, 2, 3]), "[rows, n_inputs]"),
        (_bad(shape=[-2, -3]), "non-negative"),
        (_bad(shape=[0, 3], data=[]), "at least one row"),
        (_bad(datatype="FP16"), "FP16' is accepted as binary tensor data only"),
        (_bad(datatype="BYTES", data=["a", "b"], shape=[1, 2]), "BYTES"),
        (_bad(datatype="float64"), "float64"),
        (
            infer_body(tensor([1, 0, 0], [1, 3], name="a"), tensor([1, 0, 0], [1, 3], name="b")),
            "takes one input tensor ('input0'), got 2: 'a', 'b'",
        ),
        (
            infer_body(*(tensor([1, 0, 0], [1, 3], name=f"t{i}") for i in range(1000))),
            "got 1000: 't0', 't1', 't2', ...",
        ),
        (_bad(data=[[1, 0, True], [0, 1, 1]]), "number"),
        (_bad(data=[[1, 0, "1"], [0, 1, 1]]), "number"),
        (_bad(data=[[1, 0, None], [0, 1, 1]]), "number"),
        (_bad(data=[[1, 0, 0], 0, 1, 1]), "not a mix"),
        (_bad(data=[1, 0, [0], 0, 1, 1]), "number"),
        (_bad(data="1,0,0"), "list"),
        (
            _bad(datatype="UINT8", data=[1, 0, 256, 0, 1, 1]),
            "UINT8 takes integers within its range [0, 255]",
        ),
        (_bad(datatype="UINT32", data=[1, 0, -1, 0, 1, 1]), "range [0, 4294967295]"),
        (_bad(datatype="INT64", data=[1, 0, 2**63, 0, 1, 1]), "INT64 takes integers"),
        (_bad(datatype="INT32", data=[1, 0, 0.5, 0, 1, 1]), "integers within"),
        (_bad(datatype="UINT64", data=[1, 0, 2**64, 0, 1, 1]), "range [0, 18446744073709551615]"),
        (_bad(datatype="INT64", data=[1, 0, -(2**63) - 1, 0, 1, 1]), "INT64 takes integers"),
        (_bad(datatype="FP32", data=[1, 0, 1e39, 0, 1, 1]), "finite"),
        (_bad(data=[1, 0, 10**400, 0, 1, 1]), "not valid JSON"),
        (_bad(parameters={"binary_data_size": 48}), "Inference-Header-Content-Length"),
        (_bad(data=None), "no data"),
        (_bad(shape=[2, 2], data=[1, 0, 0, 1]), "3 numbers"),
        (
            infer_body(tensor([1, 0, 0], [1, 3]), model_name="iris"),
            "model_name 'iris' in the body does not agree with the URL's model 'neuron'",
        ),
        (infer_body(tensor([1, 0, 0], [1, 3]), model_name=7), "model_name"),
        (
            infer_body(tensor([1, 0, 0], [1, 3]), model_version="2"),
            "model_version '2' in the body does not agree with the URL, "
            "which names the serving version '1'",
        ),
        (infer_body(tensor([1, 0, 0], [1, 3]), model_version=1), "model_version"),
        (_bad(name=None), "name"),
        ({"inputs": []}, "inputs"),
        ({"id": "1"}, "inputs"),
        ({"inputs": [{"name": "input0"}]}, "shape"),
        (
            infer_body(tensor([1, 0, 0], [1, 3]), tensor([1, 0, 0], [1, 3])),
            "takes one input tensor",
        ),
        (infer_body(tensor([1, 0, 0], [1, 3]), tensor([1], [1, 1], "FP64", "input1")), "input1"),
        (infer_body(tensor([1, 0, 0], [1, 3]), outputs=[{"name": "output1"}]), "output1"),
        (infer_body(tensor([1, 0, 0], [1, 3]), outputs=[{"name": "output0"}] * 2), "2 times"),
        (
            infer_body(
                tensor([1, 0, 0], [1, 3]),
                outputs=[{"name": "output0", "parameters": {"datatype": "INT8"}}],
            ),
            "FP32 or FP64",
        ),
        (
            infer_body(
                tensor([1, 0, 0], [1, 3]),
                outputs=[{"name": "output0", "parameters": {"classification": 2}}],
            ),
            "classification",
        ),
        (infer_body(tensor([1, 0, 0], [1, 3]), parameters={"nested": {"a": 1}}), "parameters"),
        (infer_body(tensor([1, 0, 0], [1, 3]), id=42), "id"),
        ([1, 2, 3], "object"),
    ],
)
def test_bad_inference_requests_get_the_spec_error(
    client: FlaskClient, body: Any, needle: str
) -> None:
    error = assert_protocol_error(client.post(INFER, json=body), 400, INFER_TEMPLATE, "post")
    assert needle.lower() in error.lower()


@pytest.mark.parametrize(
    ("data", "headers", "status", "needle"),
    [
        (b"{", {"Content-Type": "application/json"}, 400, "not valid JSON"),
        (b'{"inputs": [NaN]}', {"Content-Type": "application/json"}, 400, "not valid JSON"),
        (b"", {"Content-Type": "application/json"}, 400, "not valid JSON"),
        (b"", {}, 400, "not valid JSON"),
        (b'{"id": "1", "id": "2", "inputs": []}', {}, 400, "repeats the key 'id'"),
        (b"{}", {"Content-Type": "text/plain"}, 415, "application/json"),
        (
            b'{"inputs": [{"name": "input0", "shape": [1, 3], "datatype": "FP64", '
            b'"data": [1, 0, 0]}]}\x00\x00',
            {"Inference-Header-Content-Length": "88"},
            400,
            "2 bytes after the JSON header belong to no input",
        ),
    ],
)
def test_bad_bodies_get_the_spec_error(
    client: FlaskClient, data: bytes, headers: dict, status: int, needle: str
) -> None:
    response = client.post(INFER, data=data, headers=headers)
    assert needle in assert_protocol_error(response, status, INFER_TEMPLATE, "post")


def test_batch_limit(tmp_path: Path) -> None:
    client = create_app(Settings(model_dir=tmp_path / "m", max_batch=2)).test_client()
    ok = client.post(INFER, json=infer_body(tensor([[1, 0, 0]] * 2, [2, 3])))
    assert ok.status_code == 200
    response = client.post(INFER, json=infer_body(tensor([[1, 0, 0]] * 3, [3, 3])))
    assert "at most 2 rows" in assert_protocol_error(response, 400, INFER_TEMPLATE, "post")


def test_oversized_body_is_a_413_in_the_spec_form(tmp_path: Path) -> None:
    client = create_app(Settings(model_dir=tmp_path / "m", max_body_bytes=1024)).test_client()
    response = client.post(INFER, data=b"x" * 2048, content_type="application/json")
    assert_protocol_error(response, 413, INFER_TEMPLATE, "post")


# -- unknown models, versions and paths ---------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("get", "/v2/models/mymodel", "/v2/models/{model_name}"),
        ("get", "/v2/models/mymodel/ready", "/v2/models/{model_name}/ready"),
        ("get", "/v2/models/neuron/versions/9", "/v2/models/{model_name}/versions/{model_version}"),
        ("get", "/v2/models/neuron/versions/v1", "/v2/models/{model_name}/versions/{model_version}"),
        ("get", "/v2/models/neuron/versions/0", "/v2/models/{model_name}/versions/{model_version}"),
        ("get", "/v2/models/neuron/versions/9/ready", "/v2/models/{model_name}/versions/{model_version}/ready"),
        ("get", "/v2/models/mymodel/versions/1", "/v2/models/{model_name}/versions/{model_version}"),
        ("post", "/v2/models/neuron/versions/9/infer", "/v2/models/{model_name}/versions/{model_version}/infer"),
        ("post", "/v2/models/neuron/versions/01/infer", "/v2/models/{model_name}/versions/{model_version}/infer"),
        ("post", "/v2/models/other/versions/1/infer", "/v2/models/{model_name}/versions/{model_version}/infer"),
    ],
)  # fmt: skip
def test_unknown_model_or_version_is_a_404(
    client: FlaskClient, method: str, path: str, template: str
) -> None:
    kwargs = {"json": infer_body(tensor([1, 0, 0], [1, 3]))} if method == "post" else {}
    response = getattr(client, method)(path, **kwargs)
    assert_protocol_error(response, 404, template, method)


def test_unmatched_v2_paths_and_methods_get_the_spec_error(client: FlaskClient) -> None:
    for path in ("/v2/repository/index", "/v2/models/neuron/config", "/v2/models"):
        response = client.get(path)
        assert response.status_code == 404
        assert set(response.get_json()) == {"error"}
    response = client.post("/v2/health/live")
    assert response.status_code == 405
    assert set(response.get_json()) == {"error"}
    assert "GET" in response.headers["Allow"]
    assert 405 in documented_statuses("/v2/health/live", "get")
    response = client.get(INFER)
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]


def test_the_main_envelope_is_kept_everywhere_else(client: FlaskClient) -> None:
    for response in (
        client.get("/no/such/path"),
        client.get("/v2x"),
        client.get("/predict"),
        client.post("/predict", json={"inputs": [[1, 0]]}),
    ):
        error = response.get_json()["error"]
        assert isinstance(error, dict) and {"code", "message"} <= set(error)


# -- readiness, failures and metrics ------------------------------------------------------------


def test_without_a_model_live_is_200_and_the_rest_503(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    client = create_app(Settings(model_dir=blocker)).test_client()
    assert client.get("/v2/health/live").get_json() == {"live": True}
    for path, template in (
        ("/v2/health/ready", "/v2/health/ready"),
        ("/v2/models/neuron/ready", "/v2/models/{model_name}/ready"),
        ("/v2/models/neuron", "/v2/models/{model_name}"),
    ):
        assert_protocol_error(client.get(path), 503, template, "get")
    response = client.post(INFER, json=infer_body(tensor([1, 0, 0], [1, 3])))
    assert_protocol_error(response, 503, INFER_TEMPLATE, "post")


def test_an_unexpected_failure_is_a_500_in_the_spec_form(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = client.application.extensions["neuron"]

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(server, "infer", explode)
    response = client.post(INFER, json=infer_body(tensor([1, 0, 0], [1, 3])))
    error = assert_protocol_error(response, 500, INFER_TEMPLATE, "post")
    assert "boom" not in error


def test_v2_requests_have_their_own_metrics_label_and_count_predictions(
    client: FlaskClient,
) -> None:
    count = (
        'neuron_http_request_duration_seconds_count{endpoint="/v2/models/<model_name>/infer",'
        'method="POST",status="200"}'
    )
    before = client.get("/metrics").get_data(as_text=True)
    rows = tensor([[1, 0, 0], [0, 1, 1], [1, 1, 1]], [3, 3])
    assert client.post(INFER, json=infer_body(rows)).status_code == 200
    after = client.get("/metrics").get_data(as_text=True)
    assert sample(after, count, default=0.0) == sample(before, count, default=0.0) + 1
    predictions = "neuron_predictions_total"
    assert sample(after, predictions, default=0.0) == sample(before, predictions, default=0.0) + 3


# -- the OpenAPI document -----------------------------------------------------------------------


def test_openapi_documents_the_v2_endpoints_with_the_spec_error() -> None:
    doc = document()
    validate_openapi(doc)
    v2 = {path: item for path, item in doc["paths"].items() if path.startswith("/v2")}
    assert set(v2) == {
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{model_name}",
        "/v2/models/{model_name}/ready",
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{model_version}",
        "/v2/models/{model_name}/versions/{model_version}/ready",
        "/v2/models/{model_name}/versions/{model_version}/infer",
    }
    for item in v2.values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                if status != "200":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema["$ref"].endswith("/OipErrorResponse")
    infer = doc["paths"]["/v2/models/{model_name}/versions/{model_version}/infer"]["post"]
    assert [p["name"] for p in infer["parameters"]] == ["model_name", "model_version"]
    assert infer["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/InferenceRequest"
    )


# -- the binary tensor data extension through the app -------------------------------------------


def binary_body(rows: np.ndarray, datatype: str = "FP64", **extra: Any) -> tuple[bytes, dict]:
    data = rows.astype(rows.dtype.newbyteorder("<")).tobytes()
    header = {
        "inputs": [
            {
                "name": "input0",
                "shape": list(rows.shape),
                "datatype": datatype,
                "parameters": {"binary_data_size": len(data)},
            }
        ],
        **extra,
    }
    encoded = orjson.dumps(header)
    return encoded + data, {"Inference-Header-Content-Length": str(len(encoded))}


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "application/json"])
def test_binary_in_fp32_binary_out(client: FlaskClient, content_type: str | None) -> None:
    rows = np.array([[0.1, 1, 0], [0.7, 0.2, 1]])
    body, headers = binary_body(
        rows, outputs=[{"name": "output0", "parameters": {"datatype": "FP32", "binary_data": True}}]
    )
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post(INFER, data=body, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/octet-stream"
    length = int(response.headers["Inference-Header-Content-Length"])
    raw = response.get_data()
    [output] = orjson.loads(raw[:length])["outputs"]
    assert output == {
        "name": "output0",
        "shape": [2, 1],
        "datatype": "FP32",
        "parameters": {"binary_data_size": 8},
    }
    values = np.frombuffer(raw[length:], dtype="<f4")
    assert values.tolist() == np.float32(predict(client, rows.tolist())).tolist()


def test_a_binary_body_with_another_content_type_is_a_415(client: FlaskClient) -> None:
    body, headers = binary_body(np.array([[1.0, 0, 0]]))
    response = client.post(INFER, data=body, headers={**headers, "Content-Type": "text/plain"})
    assert "application/octet-stream" in assert_protocol_error(
        response, 415, INFER_TEMPLATE, "post"
    )


def test_a_binary_body_over_the_limit_is_a_413(tmp_path: Path) -> None:
    client = create_app(Settings(model_dir=tmp_path / "m", max_body_bytes=1024)).test_client()
    body, headers = binary_body(np.zeros((50, 3)))
    response = client.post(INFER, data=body, headers=headers)
    assert_protocol_error(response, 413, INFER_TEMPLATE, "post")


def test_a_header_length_covering_a_whole_json_body_is_a_json_request(client: FlaskClient) -> None:
    body = orjson.dumps(infer_body(tensor([[1, 0, 0]], [1, 3])))
    response = client.post(
        INFER, data=body, headers={"Inference-Header-Content-Length": str(len(body))}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["outputs"][0]["data"] == predict(client, [[1, 0, 0]])
