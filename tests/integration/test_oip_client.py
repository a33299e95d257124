"""A published Open Inference Protocol client (NVIDIA's tritonclient[http]) against real gunicorn.

Nothing here is adapted to this server: the client speaks KServe V2 REST as it does to Triton,
over 127.0.0.1, to two workers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

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
    assert "binary_tensor_data" not in server["extensions"]
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


def test_infer_with_the_clients_defaults_gets_json_back(
    client: httpclient.InferenceServerClient, shared_server: Gunicorn
) -> None:
    """No outputs named: tritonclient asks for binary outputs; JSON ones still decode."""
    result = client.infer("neuron", [infer_input(ROWS.astype(np.float64))], model_version="1")
    assert np.array_equal(result.as_numpy("output0")[:, 0], predicted(shared_server, ROWS))


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


def test_binary_tensor_data_is_refused_clearly(client: httpclient.InferenceServerClient) -> None:
    tensor = httpclient.InferInput("input0", [4, 3], "FP64")
    tensor.set_data_from_numpy(ROWS.astype(np.float64), binary_data=True)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("neuron", [tensor])
    assert caught.value.status() == "400"
    assert "binary tensor data is not supported" in caught.value.message()


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
