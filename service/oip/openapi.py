"""The V2 routes' rows of the OpenAPI document: their errors are {"error": "..."}."""

from __future__ import annotations

from ..http.openapi import Operation
from .schemas import (
    INPUT_NAME,
    MODEL_NAME,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    OipErrorResponse,
    ServerLive,
    ServerMetadata,
    ServerReady,
)

_V2_MODEL = "/v2/models/{model_name}"
_V2_VERSION = "/v2/models/{model_name}/versions/{model_version}"
INFER_EXAMPLE = {
    "inputs": [{"name": INPUT_NAME, "shape": [1, 3], "datatype": "FP64", "data": [1, 0, 0]}]
}
PARAMETER_EXAMPLES = {"model_name": MODEL_NAME, "model_version": "1"}

OPERATIONS = (
    Operation("/v2", "get", "V2: server metadata", ServerMetadata, error_response=OipErrorResponse),
    Operation(
        "/v2/health/live", "get", "V2: server live", ServerLive, error_response=OipErrorResponse
    ),
    Operation(
        "/v2/health/ready", "get", "V2: server ready; 503 until a model is loaded", ServerReady,
        errors=(503,), error_response=OipErrorResponse,
    ),
    Operation(
        _V2_MODEL, "get", "V2: metadata of the serving version", ModelMetadata, errors=(503,),
        error_response=OipErrorResponse,
    ),
    Operation(
        _V2_VERSION, "get", "V2: metadata of a kept version", ModelMetadata, errors=(503,),
        error_response=OipErrorResponse,
    ),
    Operation(
        f"{_V2_MODEL}/ready", "get", "V2: model ready", ModelReady, errors=(503,),
        error_response=OipErrorResponse,
    ),
    Operation(
        f"{_V2_VERSION}/ready", "get", "V2: kept version ready", ModelReady, errors=(503,),
        error_response=OipErrorResponse,
    ),
    Operation(
        f"{_V2_MODEL}/infer", "post", "V2: inference with the serving version",
        InferenceResponse, InferenceRequest, (400, 413, 415, 503),
        error_response=OipErrorResponse, example=INFER_EXAMPLE,
    ),
    Operation(
        f"{_V2_VERSION}/infer", "post", "V2: inference with a kept version", InferenceResponse,
        InferenceRequest, (400, 413, 415, 503), error_response=OipErrorResponse,
        example=INFER_EXAMPLE,
    ),
)  # fmt: skip
