"""The V2 gRPC service under real gunicorn (2 workers), through the protocol's own clients.

tritonclient.grpc runs in a child process (tritongrpc.py says why), once for the module;
KServe's InferenceGRPCClient runs here, as a script using it would (asyncio.run). Both with
their defaults; every answer must equal what /predict answers for the same rows, bit for bit.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
import pytest
from kserve import InferenceGRPCClient, InferInput, InferRequest, InferResponse
from kserve.protocol.infer_type import RequestedOutput

from .server import ROOT, Gunicorn
from .tritongrpc import COUNTS, DATATYPES, case_key, rows_of

T = TypeVar("T")
CASES = [(datatype, count) for datatype in DATATYPES for count in COUNTS]


def predicted(server: Gunicorn, rows: np.ndarray) -> np.ndarray:
    response = server.post("/predict", {"inputs": rows.astype(np.float64).tolist()})
    assert response.status_code == 200, response.text
    return np.array(response.json()["predictions"])


@pytest.fixture(scope="module")
def triton(shared_server: Gunicorn, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """What tritonclient.grpc answered, case by case (tritongrpc.main)."""
    out = tmp_path_factory.mktemp("triton") / "answers.npz"
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.tritongrpc", shared_server.grpc_target, str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return np.load(out)


def test_tritonclient_sees_a_live_ready_server_and_the_models_metadata(
    triton: Any, shared_server: Gunicorn
) -> None:
    facts = json.loads(str(triton["facts"]))
    assert (facts["live"], facts["ready"], facts["model_ready"], facts["version_ready"]) == (
        True, True, True, True,
    )  # fmt: skip
    # The same metadata as REST's (int64 shapes print as strings in protobuf's JSON).
    assert facts["server_metadata"] == shared_server.get("/v2").json()
    rest = shared_server.get("/v2/models/neuron").json()
    for tensor in facts["model_metadata"]["inputs"] + facts["model_metadata"]["outputs"]:
        tensor["shape"] = [int(size) for size in tensor["shape"]]
    assert facts["model_metadata"] == rest


@pytest.mark.parametrize(("datatype", "count"), CASES, ids=[case_key(*c) for c in CASES])
def test_tritonclient_infer_equals_predict(
    triton: Any, shared_server: Gunicorn, datatype: str, count: int
) -> None:
    answer = triton[case_key(datatype, count)]
    assert answer.shape == (count, 1)
    assert answer.dtype == np.float64
    assert str(triton[case_key(datatype, count) + "-version"]) == "1"
    assert np.array_equal(answer[:, 0], predicted(shared_server, rows_of(datatype, count)))


def run(server: Gunicorn, work: Callable[[InferenceGRPCClient], Awaitable[T]]) -> T:
    """``work(client)`` in a fresh event loop, as a script using KServe's SDK runs it."""

    async def session() -> T:
        client = InferenceGRPCClient(server.grpc_target)
        try:
            return await work(client)
        finally:
            await client.close()

    return asyncio.run(session())


def test_kserve_grpc_client_sees_a_live_ready_model(shared_server: Gunicorn) -> None:
    async def health(client: InferenceGRPCClient) -> tuple[bool, bool, bool]:
        return (
            await client.is_server_live(),
            await client.is_server_ready(),
            await client.is_model_ready("neuron"),
        )

    assert run(shared_server, health) == (True, True, True)


@pytest.mark.parametrize("binary", [True, False], ids=["raw", "contents"])
@pytest.mark.parametrize(("datatype", "count"), CASES, ids=[case_key(*c) for c in CASES])
def test_kserve_grpc_client_infer_equals_predict(
    shared_server: Gunicorn, datatype: str, count: int, binary: bool
) -> None:
    rows = rows_of(datatype, count)
    tensor = InferInput(name="input-0", shape=list(rows.shape), datatype=datatype)
    tensor.set_data_from_numpy(rows, binary_data=binary)  # False: typed contents
    request_id = str(uuid.uuid4())
    sent = InferRequest(model_name="neuron", infer_inputs=[tensor], request_id=request_id)

    async def infer(client: InferenceGRPCClient) -> InferResponse:
        return await client.infer(sent)

    response = run(shared_server, infer)
    assert (response.model_name, response.model_version) == ("neuron", "1")
    assert response.id == request_id
    [output] = response.outputs
    assert (output.name, output.datatype, output.shape) == ("output0", "FP64", [count, 1])
    assert np.array_equal(output.as_numpy()[:, 0], predicted(shared_server, rows))


def test_an_fp32_output_asked_for_is_rests_fp32_output(shared_server: Gunicorn) -> None:
    rows = rows_of("FP64", 100)
    tensor = InferInput(name="input0", shape=[100, 3], datatype="FP64")
    tensor.set_data_from_numpy(rows)
    wanted = RequestedOutput(name="output0", parameters={"datatype": "FP32"})
    sent = InferRequest(model_name="neuron", infer_inputs=[tensor], request_outputs=[wanted])

    async def infer(client: InferenceGRPCClient) -> InferResponse:
        return await client.infer(sent)

    [output] = run(shared_server, infer).outputs
    assert output.datatype == "FP32"
    rest = shared_server.post(
        "/v2/models/neuron/infer",
        {
            "inputs": [{"name": "input0", "shape": [100, 3], "datatype": "FP64", "data": rows.ravel().tolist()}],
            "outputs": [{"name": "output0", "parameters": {"datatype": "FP32"}}],
        },
    )  # fmt: skip
    expected = np.array(rest.json()["outputs"][0]["data"], dtype=np.float32)
    assert np.array_equal(output.as_numpy()[:, 0], expected)
