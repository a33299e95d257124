"""The peer: the FastAPI app a user would write by hand instead of the service (bench/README.md).

The article's neuron, trained at import exactly as the service trains its default model, served
by uvicorn (bench/.venv-fastapi, bench/requirements-fastapi.txt):

    bench/.venv-fastapi/bin/uvicorn bench.peer_fastapi:app --workers 2 --no-access-log
"""

from typing import Annotated

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel, Field, FiniteFloat

X = np.array([[0, 0, 1], [1, 1, 1], [1, 0, 1], [0, 1, 1]])
y = np.array([[0, 1, 1, 0]]).T
np.random.seed(1)
weights = 2 * np.random.random((3, 1)) - 1
for _ in range(10_000):
    out = 1 / (1 + np.exp(-(X @ weights)))
    weights += X.T @ ((y - out) * out * (1 - out))


class PredictRequest(BaseModel):
    inputs: list[Annotated[list[FiniteFloat], Field(min_length=3, max_length=3)]] = Field(
        min_length=1
    )


app = FastAPI()


@app.post("/predict")
async def predict(request: PredictRequest) -> dict[str, list[float]]:
    out = 1 / (1 + np.exp(-(np.array(request.inputs) @ weights)))
    return {"predictions": out[:, 0].tolist()}
