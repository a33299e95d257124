"""A published Open Inference Protocol client (NVIDIA's tritonclient[http]) against real gunicorn.

Nothing here is adapted to this server: the client speaks KServe V2 REST as it does to Triton,
over 127.0.0.1, to two workers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import orjson
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.metrics_text import sample

from .server import TOKEN, Gunicorn

AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROWS = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 1]])


def connect(server: Gunicorn) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}", network_timeout=10.0)


@pytest.fixture
def client(shared_server: Gunicorn) -> Iterator[httpclient.InferenceServerClient]:
    triton = connect(shared_server)
    try:
        yield triton
    finally:
        triton.close()


def predicted(server: Gunicorn, rows: np.ndarray) -> np.ndarray:
    response = server.post("/predict", {"inputs": rows.tolist()})
    assert response.status_code == 200
    return np.array(response.json()["predictions"])


def infer_input(rows: np.ndarray, datatype: str = "FP64") -> httpclient.InferInput:
    tensor = httpclient.InferInput("input0", list(rows.shape), datatype)
    tensor.set_data_from_numpy(rows, binary_data=False)
    return tensor


def test_health(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("neuron")
    assert client.is_model_ready("neuron", model_version="1")
    assert not client.is_model_ready("mymodel")
    assert not client.is_model_ready("neuron", model_version="9")


def test_metadata(client: httpclient.InferenceServerClient) -> None:
    server = client.get_server_metadata()
    assert server["name"] == "neuron-service"
    assert server["extensions"] == ["binary_tensor_data"]
    model = client.get_model_metadata("neuron")
    assert model["name"] == "neuron"
    assert model["versions"] == ["1"]
    assert model["inputs"] == [{"name": "input0", "datatype": "FP64", "shape": [-1, 3]}]
    assert model["outputs"] == [{"name": "output0", "datatype": "FP64", "shape": [-1, 1]}]
    assert client.get_model_metadata("neuron", model_version="1") == model


@pytest.mark.parametrize(
    ("datatype", "dtype"), [("FP64", np.float64), ("FP32", np.float32), ("INT32", np.int32)]
)
def test_infer_matches_predict(
    client: httpclient.InferenceServerClient, shared_server: Gunicorn, datatype: str, dtype: type
) -> None:
    rows = ROWS.astype(dtype)
    result = client.infer(
        "neuron",
        [infer_input(rows, datatype)],
        outputs=[httpclient.InferRequestedOutput("output0", binary_data=False)],
        request_id="req-7",
    )
    response = result.get_response()
    assert response["model_name"] == "neuron"
    assert response["model_version"] == "1"
    assert response["id"] == "req-7"
    probabilities = result.as_numpy("output0")
    assert probabilities.dtype == np.float64
    assert probabilities.shape == (len(rows), 1)
    assert np.array_equal(probabilities[:, 0], predicted(shared_server, rows.astype(np.float64)))


# Rows whose values are not exact in FP16 or FP32: the input type's rounding shows.
RNG_ROWS = np.random.default_rng(11).uniform(-3, 3, size=(64, 3))
INT_ROWS = np.random.default_rng(12).integers(-100, 100, size=(64, 3))


@pytest.mark.parametrize(
    ("datatype", "rows"),
    [
        ("FP64", RNG_ROWS),
        ("FP32", RNG_ROWS.astype(np.float32)),
        ("FP16", RNG_ROWS.astype(np.float16)),
        ("INT32", INT_ROWS.astype(np.int32)),
        ("UINT8", (INT_ROWS + 100).astype(np.uint8)),
    ],
)
def test_the_clients_defaults_binary_in_and_out(
    client: httpclient.InferenceServerClient,
    shared_server: Gunicorn,
    datatype: str,
    rows: np.ndarray,
) -> None:
    """set_data_from_numpy(x) and InferRequestedOutput("output0"): binary both ways."""
    tensor = httpclient.InferInput("input0", list(rows.shape), datatype)
    tensor.set_data_from_numpy(rows)
    result = client.infer(
        "neuron", [tensor], outputs=[httpclient.InferRequestedOutput("output0")], request_id="b"
    )
    output = result.get_output("output0")
    assert output["parameters"] == {"binary_data_size": 8 * len(rows)}
    assert "data" not in output
    assert result.get_response()["id"] == "b"
    probabilities = result.as_numpy("output0")
    assert probabilities.dtype == np.float64
    assert probabilities.shape == (len(rows), 1)
    # /predict takes the very numbers the client sent: the input type's values as float64.
    expected = predicted(shared_server, rows.astype(np.float64))
    assert np.array_equal(probabilities[:, 0], expected)
    if datatype in ("FP32", "FP16"):  # the rounding was the server's to keep, and it kept it
        assert not np.array_equal(expected, predicted(shared_server, RNG_ROWS))


@pytest.mark.parametrize("name", ["input-0", "predict"])
def test_the_client_with_an_input_named_its_own_way(
    client: httpclient.InferenceServerClient, shared_server: Gunicorn, name: str
) -> None:
    """KServe's and MLServer's examples name the input their way; the client's defaults
    (binary in, binary out) get the same numbers as /predict."""
    tensor = httpclient.InferInput(name, list(RNG_ROWS.shape), "FP64")
    tensor.set_data_from_numpy(RNG_ROWS)
    result = client.infer("neuron", [tensor])
    assert np.array_equal(result.as_numpy("output0")[:, 0], predicted(shared_server, RNG_ROWS))


def test_the_clients_default_request_is_logged_and_measured_as_the_infer_route(
    client: httpclient.InferenceServerClient, shared_server: Gunicorn
) -> None:
    """Served by the binary lane (no Flask request): the view's label all the same."""
    count = (
        'neuron_http_request_duration_seconds_count{endpoint="/v2/models/<model_name>/infer",'
        'method="POST",status="200"}'
    )
    before = sample(shared_server.get("/metrics").text, count, default=0.0)
    tensor = httpclient.InferInput("input0", list(RNG_ROWS.shape), "FP64")
    tensor.set_data_from_numpy(RNG_ROWS)
    client.infer("neuron", [tensor], headers={"X-Request-ID": "lane-label"})
    assert sample(shared_server.get("/metrics").text, count) == before + 1
    [line] = [
        line
        for line in shared_server.log_lines()
        if line.get("logger") == "neuron.access"
        and line.get("path") == "/v2/models/neuron/infer"
        and line.get("request_id") == "lane-label"
    ]
    assert (line["endpoint"], line["method"], line["status"]) == (
        "/v2/models/<model_name>/infer",
        "POST",
        200,
    )


def test_json_in_binary_out_and_binary_in_json_out(
    client: httpclient.InferenceServerClient, shared_server: Gunicorn
) -> None:
    expected = predicted(shared_server, RNG_ROWS)
    json_in = client.infer(
        "neuron", [infer_input(RNG_ROWS)], outputs=[httpclient.InferRequestedOutput("output0")]
    )
    assert "data" not in json_in.get_output("output0")
    assert np.array_equal(json_in.as_numpy("output0")[:, 0], expected)

    tensor = httpclient.InferInput("input0", list(RNG_ROWS.shape), "FP64")
    tensor.set_data_from_numpy(RNG_ROWS)
    json_out = client.infer(
        "neuron", [tensor], outputs=[httpclient.InferRequestedOutput("output0", binary_data=False)]
    )
    assert json_out.get_output("output0")["data"] == expected.tolist()
    assert np.array_equal(json_out.as_numpy("output0")[:, 0], expected)


def test_no_outputs_named_means_binary_output(
    client: httpclient.InferenceServerClient, shared_server: Gunicorn
) -> None:
    """No outputs named: tritonclient sets binary_data_output, and gets binary back."""
    result = client.infer("neuron", [infer_input(ROWS.astype(np.float64))], model_version="1")
    assert result.get_output("output0")["parameters"] == {"binary_data_size": 8 * len(ROWS)}
    assert np.array_equal(result.as_numpy("output0")[:, 0], predicted(shared_server, ROWS))


def test_binary_response_on_the_wire(shared_server: Gunicorn) -> None:
    """The response's own header and content type, and its bytes, read without tritonclient."""
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input0",
                    "shape": [4, 3],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 96},
                }
            ],
            "outputs": [{"name": "output0", "parameters": {"binary_data": True}}],
        }
    )
    response = requests.post(
        f"{shared_server.url}/v2/models/neuron/infer",
        data=header + ROWS.astype("<f8").tobytes(),
        headers={
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/octet-stream"
    length = int(response.headers["Inference-Header-Content-Length"])
    assert int(response.headers["Content-Length"]) == len(response.content) == length + 32
    head = orjson.loads(response.content[:length])
    assert head["outputs"] == [
        {
            "name": "output0",
            "shape": [4, 1],
            "datatype": "FP64",
            "parameters": {"binary_data_size": 32},
        }
    ]
    data = np.frombuffer(response.content[length:], dtype="<f8")
    assert np.array_equal(data, predicted(shared_server, ROWS))


def test_fp32_output_on_request(shared_server: Gunicorn) -> None:
    """Asking for FP32 is this server's output parameter; the client's parser reads the answer."""
    body = {
        "inputs": [{"name": "input0", "shape": [4, 3], "datatype": "FP64", "data": ROWS.tolist()}],
        "outputs": [{"name": "output0", "parameters": {"datatype": "FP32"}}],
    }
    response = shared_server.post("/v2/models/neuron/infer", body)
    assert response.status_code == 200
    output = httpclient.InferResult.from_response_body(response.content).as_numpy("output0")
    assert output.dtype == np.float32
    assert np.array_equal(output[:, 0], predicted(shared_server, ROWS).astype(np.float32))


@pytest.mark.parametrize(
    ("model", "version", "rows", "status", "pattern"),
    [
        ("mymodel", "", ROWS, "404", r"unknown model 'mymodel'"),
        ("neuron", "9", ROWS, "404", r"version 9"),
        ("neuron", "", ROWS[:, :2], "400", r"takes rows of 3 numbers, got 2"),
    ],
)
def test_errors_reach_the_client_as_the_spec_error(
    client: httpclient.InferenceServerClient,
    model: str,
    version: str,
    rows: np.ndarray,
    status: str,
    pattern: str,
) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer(model, [infer_input(rows.astype(np.float64))], model_version=version)
    assert caught.value.status() == status
    assert re.search(pattern, caught.value.message())


def test_shape_disagreeing_with_data_is_refused(client: httpclient.InferenceServerClient) -> None:
    tensor = httpclient.InferInput("input0", [2, 3], "FP64")
    tensor.set_data_from_numpy(ROWS[:2].astype(np.float64), binary_data=False)
    tensor.set_shape([3, 3])  # the client lets the shape disagree with the data it holds
    with pytest.raises(InferenceServerException) as caught:
        client.infer("neuron", [tensor])
    assert caught.value.status() == "400"
    assert "9 elements but data has 6" in caught.value.message()


def test_binary_errors_reach_the_client_as_the_spec_error(
    client: httpclient.InferenceServerClient,
) -> None:
    tensor = httpclient.InferInput("input0", [4, 3], "FP64")
    tensor.set_data_from_numpy(ROWS.astype(np.float64))
    tensor.set_shape([5, 3])  # the client lets the shape disagree with the data it holds
    with pytest.raises(InferenceServerException) as caught:
        client.infer("neuron", [tensor])
    assert caught.value.status() == "400"
    assert "binary_data_size 96 of 'input0' disagrees with shape [5, 3]" in caught.value.message()


def test_kept_versions_and_metrics_labels(server: Gunicorn) -> None:
    """After a retrain, the older version can still be asked for by number."""
    body = {"inputs": [[1, 0], [0, 1], [1, 1], [0, 0]], "targets": [0, 1, 1, 0]}
    assert server.post("/admin/retrain", body, headers=AUTH).json()["model_version"] == 2
    triton = connect(server)
    try:
        assert triton.get_model_metadata("neuron")["versions"] == ["2", "1"]
        old = triton.get_model_metadata("neuron", model_version="1")
        assert old["inputs"][0]["shape"] == [-1, 3]
        for _ in range(4):  # new connections: both workers answer
            fresh = connect(server)
            try:
                new = fresh.infer("neuron", [infer_input(np.array([[0.0, 1.0]]))])
                assert new.get_response()["model_version"] == "2"
            finally:
                fresh.close()
        kept = triton.infer("neuron", [infer_input(ROWS.astype(np.float64))], model_version="1")
        assert kept.get_response()["model_version"] == "1"
        assert kept.as_numpy("output0").shape == (4, 1)
    finally:
        triton.close()
    text = server.get("/metrics").text
    for endpoint in (
        "/v2/models/<model_name>/infer",
        "/v2/models/<model_name>/versions/<model_version>/infer",
    ):
        line = f'neuron_http_request_duration_seconds_count{{endpoint="{endpoint}",method="POST",status="200"}}'
        assert line in text
