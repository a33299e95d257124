"""KServe's own Python SDK (kserve 0.21) as a V2 client of real gunicorn, with its defaults.

Its users write an async function around ``InferenceRESTClient(RESTConfig(protocol="v2"))``
and run it with ``asyncio.run``; so do these tests. The SDK puts ``model_name`` and an ``id``
in every request body, JSON or binary (InferRequest.to_rest), which this server once refused.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import numpy as np
import pytest
from kserve import InferenceRESTClient, InferInput, InferRequest, InferResponse, RESTConfig

from .server import Gunicorn

T = TypeVar("T")
MAX_ROWS = 10_000  # the default NEURON_MAX_BATCH: the largest batch one request may carry
DATATYPES = [("FP64", np.float64), ("FP32", np.float32), ("INT32", np.int32)]


def run(server: Gunicorn, work: Callable[[InferenceRESTClient, str], Awaitable[T]]) -> T:
    """``work(client, base_url)`` in a fresh event loop, as a script using the SDK runs it."""

    async def session() -> T:
        client = InferenceRESTClient(RESTConfig(protocol="v2"))
        try:
            return await work(client, f"http://127.0.0.1:{server.port}")
        finally:
            await client.close()

    return asyncio.run(session())


def request(
    rows: np.ndarray, datatype: str, binary: bool, model_name: str = "neuron"
) -> InferRequest:
    tensor = InferInput(name="input-0", shape=list(rows.shape), datatype=datatype)
    tensor.set_data_from_numpy(rows, binary_data=binary)
    return InferRequest(model_name=model_name, infer_inputs=[tensor])


def predicted(server: Gunicorn, rows: np.ndarray) -> np.ndarray:
    response = server.post("/predict", {"inputs": rows.astype(np.float64).tolist()})
    assert response.status_code == 200, response.text
    return np.array(response.json()["predictions"])


def rows_of(datatype: np.dtype, count: int) -> np.ndarray:
    generator = np.random.default_rng(count)
    if np.issubdtype(datatype, np.integer):
        return generator.integers(-50, 50, size=(count, 3)).astype(datatype)
    return generator.uniform(-3, 3, size=(count, 3)).astype(datatype)


def test_health_with_the_sdk(shared_server: Gunicorn) -> None:
    async def health(client: InferenceRESTClient, url: str) -> tuple[bool, bool, bool]:
        return (
            await client.is_server_live(url),
            await client.is_server_ready(url),
            await client.is_model_ready(url, "neuron"),
        )

    assert run(shared_server, health) == (True, True, True)


@pytest.mark.parametrize("count", [1, MAX_ROWS])
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize(("datatype", "dtype"), DATATYPES, ids=[d for d, _ in DATATYPES])
def test_infer_with_the_sdk_matches_predict(
    shared_server: Gunicorn, datatype: str, dtype: type, binary: bool, count: int
) -> None:
    rows = rows_of(np.dtype(dtype), count)
    sent = request(rows, datatype, binary)

    async def infer(client: InferenceRESTClient, url: str) -> InferResponse:
        return await client.infer(url, sent, model_name="neuron")

    response = run(shared_server, infer)
    assert response.model_name == "neuron"
    assert uuid.UUID(response.id).version == 4  # the id the SDK made up for the body, echoed
    [output] = response.outputs
    assert output.name == "output0"
    probabilities = output.as_numpy()
    assert probabilities.shape == (count, 1)
    assert np.array_equal(probabilities[:, 0], predicted(shared_server, rows))


def _refusal(server: Gunicorn, sent: InferRequest, model_name: str = "neuron") -> str:
    async def infer(client: InferenceRESTClient, url: str) -> str:
        with pytest.raises(httpx.HTTPStatusError) as caught:
            await client.infer(url, sent, model_name=model_name)
        assert caught.value.response.status_code == 400
        return str(caught.value.response.json()["error"])

    return run(server, infer)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_a_wrong_width_gets_the_message_rest_gives(shared_server: Gunicorn, binary: bool) -> None:
    rows = np.array([[1.0, 0.0], [0.0, 1.0]])
    plain = shared_server.post(
        "/v2/models/neuron/infer",
        {
            "inputs": [
                {"name": "input-0", "shape": [2, 2], "datatype": "FP64", "data": [1, 0, 0, 1]}
            ]
        },
    )
    assert plain.status_code == 400
    assert _refusal(shared_server, request(rows, "FP64", binary)) == plain.json()["error"]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_a_model_name_the_url_does_not_name_is_a_400_naming_both(
    shared_server: Gunicorn, binary: bool
) -> None:
    # The SDK takes the URL's model from its argument and the body's from the InferRequest.
    sent = request(np.array([[1.0, 0.0, 0.0]]), "FP64", binary, model_name="iris")
    assert _refusal(shared_server, sent) == (
        "model_name 'iris' in the body does not agree with the URL's model 'neuron'"
    )
