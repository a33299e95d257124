"""Open Inference Protocol (KServe V2) schemas: the pydantic envelopes. No Flask here."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StrictInt, WithJsonSchema

SERVER_NAME = "neuron-service"
MODEL_NAME = "neuron"
PLATFORM = "numpy"
INPUT_NAME = "input0"
OUTPUT_NAME = "output0"
DEFAULT_OUTPUT_DATATYPE = "FP64"
# Extensions this server supports: tensors travel as JSON or as binary data after the JSON.
EXTENSIONS: tuple[str, ...] = ("binary_tensor_data",)

Parameters = dict[str, str | int | float | bool]


def _is_list(value: Any) -> list[Any]:
    """Tensor data is kept as sent (no per-element copy); to_matrix checks it with numpy."""
    if not isinstance(value, list):
        raise ValueError("must be a list of numbers, flat or nested as the shape says")
    return value


_NUMBERS = {"type": "array", "items": {"type": "number"}}
TensorData = Annotated[
    list[Any],
    PlainValidator(_is_list),
    WithJsonSchema({"type": "array", "items": {"anyOf": [{"type": "number"}, _NUMBERS]}}),
]


class _Request(BaseModel):
    # Unknown fields are ignored, as KServe's, MLServer's and Triton's servers ignore them
    # (docs/v2.md): the protocol's clients add their own (KServe's SDK sends model_name).
    model_config = ConfigDict(extra="ignore", frozen=True)


class RequestInput(_Request):
    name: str = Field(
        description=f"Any name: the model has one input tensor (its metadata says {INPUT_NAME!r})."
    )
    # JSON integers only: lax int would take "1", 1.0 and true.
    shape: list[StrictInt] = Field(description="[rows, n_inputs] of the whole batch.")
    datatype: str = Field(
        description="FP32, FP64 or an integer type (UINT8..64, INT8..64); FP16 as binary data."
    )
    parameters: Parameters | None = Field(
        None, description="binary_data_size: the tensor's bytes follow the JSON (binary data)."
    )
    data: TensorData | None = Field(
        None, description="Row-major, flat or nested as the shape says; absent for binary data."
    )


class RequestOutput(_Request):
    name: str = Field(description=f"The model's output tensor: {OUTPUT_NAME!r}.")
    parameters: Parameters | None = Field(
        None,
        description='{"datatype": "FP32"} asks for FP32 data; the default is FP64. '
        '{"binary_data": true} asks for it as binary data after the JSON.',
    )


class InferenceRequest(_Request):
    id: str | None = Field(None, description="Echoed back in the response.")
    model_name: str | None = Field(
        None, description="Not in the protocol's schema; KServe's SDK sends it. Must be the URL's."
    )
    model_version: str | None = Field(
        None, description="If sent, the version that answers: the URL's, else the serving one."
    )
    parameters: Parameters | None = Field(
        None, description='{"binary_data_output": true}: every output as binary data.'
    )
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 marks the variable batch dimension.")


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = Field(
        None, description="binary_data_size when the data follows the JSON as binary data."
    )
    data: list[float] | None = Field(None, description="Absent when sent as binary data.")


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str] = Field(description="Supported extensions: binary_tensor_data.")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str] = Field(description="Kept versions, newest first.")
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    parameters: Parameters | None = Field(
        None,
        description="What the tensors do not say: bias (the intercept), hidden_units and "
        "hidden_activation (a fixed hidden layer). Absent for the article's bare neuron.",
    )


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class OipErrorResponse(BaseModel):
    """The protocol's error object: one descriptive string."""

    error: str


def model_metadata(
    n_inputs: int, versions: list[int], parameters: Parameters | None = None
) -> ModelMetadata:
    return ModelMetadata(
        name=MODEL_NAME,
        versions=[str(v) for v in versions],
        platform=PLATFORM,
        inputs=[MetadataTensor(name=INPUT_NAME, datatype="FP64", shape=[-1, n_inputs])],
        outputs=[MetadataTensor(name=OUTPUT_NAME, datatype=DEFAULT_OUTPUT_DATATYPE, shape=[-1, 1])],
        parameters=parameters or None,
    )
