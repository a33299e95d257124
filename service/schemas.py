"""Request and response schemas. Envelopes are pydantic; number matrices are checked by numpy."""

from __future__ import annotations

from itertools import chain
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from .errors import ValidationFailed
from .model.neuron import FULL_BATCH_ROWS, MINI_BATCH
from .model.policy import STEP_PER_ROW
from .model.tabular import MAX_NAME_LENGTH
from .store import StoredScaling, TrainingMetadata, Validation

_NUMBER_TYPES = frozenset({int, float})


def _as_matrix(value: Any, info: ValidationInfo) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A non-empty 2-D list of finite JSON numbers -> float64 array, without a Python loop.

    The context may say ``numbers_only=True`` (jsonbody.JsonBody found no string value, true,
    false or null in the raw body), which skips the one per-element check numpy cannot do: it
    silently reads True and "1" as 1.0 (and None as nan).
    Row types and lengths are checked with C-level set(map(...)), and the values go straight
    into one flat buffer (np.fromiter): half the time of np.array on nested lists.
    """
    context = info.context or {}
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty list of rows")
    max_rows = context.get("max_rows")
    if max_rows is not None and len(value) > max_rows:
        raise ValueError(f"at most {max_rows} rows are allowed, got {len(value)}")
    if set(map(type, value)) != {list}:
        raise ValueError("every row must be a list of numbers")
    if not context.get("numbers_only", False) and not _NUMBER_TYPES.issuperset(
        map(type, chain.from_iterable(value))
    ):
        raise ValueError("every value must be a number (not a boolean, string or null)")
    widths = set(map(len, value))
    if len(widths) != 1:
        raise ValueError("rows must all have the same length and hold only numbers")
    width = widths.pop()
    if width == 0:
        raise ValueError("must be a list of non-empty rows of numbers")
    try:  # a nested list or a number beyond float64 raises here
        flat = np.fromiter(chain.from_iterable(value), np.float64, len(value) * width)
    except (ValueError, TypeError, OverflowError):
        raise ValueError("rows must all have the same length and hold only numbers") from None
    matrix = flat.reshape(len(value), width)
    if not np.isfinite(matrix).all():
        raise ValueError("every value must be a finite number")
    return matrix


def _as_vector(value: Any, info: ValidationInfo) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Targets: a non-empty list of numbers in [0, 1], as a (rows, 1) column."""
    if not isinstance(value, list) or not value or any(type(v) is list for v in value):
        raise ValueError("must be a non-empty flat list of numbers")
    matrix = _as_matrix([value], info)
    if ((matrix < 0) | (matrix > 1)).any():
        raise ValueError("every target must lie in [0, 1]")
    return matrix.reshape(-1, 1)


_ROW = {"type": "array", "items": {"type": "number"}, "minItems": 1}
Matrix = Annotated[
    np.ndarray[Any, np.dtype[np.float64]],
    PlainValidator(_as_matrix),
    WithJsonSchema({"type": "array", "items": _ROW, "minItems": 1}),
]
Targets = Annotated[
    np.ndarray[Any, np.dtype[np.float64]],
    PlainValidator(_as_vector),
    WithJsonSchema(
        {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}, "minItems": 1}
    ),
]


FeatureName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]


class Request(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, arbitrary_types_allowed=True
    )


class PredictRequest(Request):
    inputs: Matrix = Field(description="Rows of exactly n_inputs finite numbers.")


class PredictResponse(BaseModel):
    predictions: list[float] = Field(description="Probability of class 1 for each row.")
    model_version: int


class EvaluateRequest(Request):
    inputs: Matrix
    targets: Targets = Field(description="The true label (0..1) of each row.")

    @model_validator(mode="after")
    def _rows_match(self) -> EvaluateRequest:
        _same_rows(self.inputs, self.targets)
        return self


def _same_rows(inputs: np.ndarray[Any, Any] | None, targets: np.ndarray[Any, Any] | None) -> None:
    if (inputs is None) != (targets is None):
        raise ValueError("inputs and targets come together")
    if inputs is not None and targets is not None and len(inputs) != len(targets):
        raise ValueError(f"{len(inputs)} rows of inputs but {len(targets)} targets")


# Requests made only of number arrays (2: rows, 1: a flat list): the HTTP layer reads these
# with arraybody when the body is exactly that, no Python number per value.
ARRAY_FIELDS: dict[type[Request], dict[str, int]] = {
    PredictRequest: {"inputs": 2},
    EvaluateRequest: {"inputs": 2, "targets": 1},
}


class EvaluateResponse(BaseModel):
    loss: float = Field(description="Mean squared error of the predictions.")
    accuracy: float = Field(description="Share of rows on the right side of 0.5.")
    rows: int
    model_version: int


DEFAULT_L2 = 0.3  # chosen by measurement on scikit-learn's data sets (docs/training.md)


class HiddenRequest(Request):
    """A fixed random hidden layer in front of the neuron: only the neuron is trained."""

    units: int = Field(
        ge=1,
        description="Hidden units. At most NEURON_MAX_HIDDEN_UNITS, and units x features at "
        "most NEURON_MAX_HIDDEN_WEIGHTS.",
    )
    activation: Literal["tanh"] = Field("tanh", description="The units' activation.")
    seed: int | None = Field(
        None, ge=0, le=2**32 - 1, description="Seed of the layer's draw; default: seed."
    )


class RetrainRequest(Request):
    inputs: Matrix | None = Field(None, description="Training rows; omit for the classic set.")
    targets: Targets | None = Field(None, description="Labels in [0, 1], one per row.")
    iterations: int = Field(10_000, ge=1, description="Training iterations.")
    learning_rate: float | None = Field(
        None,
        gt=0,
        le=1_000,
        allow_inf_nan=False,
        description=f"Step of the article's rule. Default: {STEP_PER_ROW:g} / training rows "
        "(the article's 1.0 on its four rows), so a step weighs the same for any row count.",
    )
    intercept: bool = Field(
        True,
        description="Learn a bias (a weight on a constant input of 1 that clients never send). "
        "The article's neuron has none: its rows carry a column of ones instead.",
    )
    l2: float = Field(
        DEFAULT_L2,
        ge=0,
        le=1_000_000,
        allow_inf_nan=False,
        description="L2 penalty on the weights (not the bias); 0 turns it off. It plays the "
        "part of 1 / C in scikit-learn's LogisticRegression (docs/training.md).",
    )
    hidden: HiddenRequest | None = Field(
        None, description='A fixed random hidden layer, e.g. {"units": 64}; null for none.'
    )
    refit: bool = Field(
        True,
        description="Once the held-out rows have scored the model, train it again on every "
        "row and serve that one (the scores stay those of the validated run).",
    )
    seed: int = Field(1, ge=0, le=2**32 - 1, description="Seed of the legacy RandomState.")
    tolerance: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="Stop early once the MSE is below this."
    )
    batch_size: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Rows per training step; each iteration is then one step on a shuffled "
        f"batch. Default: every row (the article's rule) up to {FULL_BATCH_ROWS:,} rows, "
        f"batches of {MINI_BATCH:,} beyond.",
    )
    force: bool = Field(
        False,
        description="Promote the model even if training did not improve, saturated, or is not "
        "more accurate than always answering the majority class.",
    )
    standardize: bool = Field(
        False,
        description="Fit each feature's mean and standard deviation on the training rows and "
        "keep them in the model, which then standardizes every raw row it is given.",
    )
    validation_fraction: float | None = Field(
        None,
        ge=0,
        le=0.5,
        allow_inf_nan=False,
        description="Share of each class held out (seeded by seed) to validate on; 0 for none. "
        "Default: 0.25 once each class has 20 rows, else none.",
    )
    promote: Literal["always", "if_better"] = Field(
        "always",
        description="if_better: promote only if the new model beats the serving one on the "
        "same held-out rows (when both take the same number of features).",
    )
    feature_names: list[FeatureName] | None = Field(
        None, description="A name per feature, stored with the model; distinct."
    )

    @model_validator(mode="after")
    def _rows_match(self) -> RetrainRequest:
        _same_rows(self.inputs, self.targets)
        names = self.feature_names
        if names is not None:
            if len(set(names)) != len(names):
                raise ValueError("feature_names must be distinct")
            width = 3 if self.inputs is None else self.inputs.shape[1]
            if len(names) != width:
                raise ValueError(f"{len(names)} feature_names for rows of {width} features")
        return self


CSV_TARGET_PARAMETER = "target"
_DATA_FIELDS = frozenset({"inputs", "targets", "feature_names"})


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as the envelope's details: where, and what is wrong there."""
    return [
        {"loc": list(item["loc"]), "msg": item["msg"].removeprefix("Value error, ")}
        for item in exc.errors(include_url=False, include_input=False)
    ]


def retrain_settings(query: dict[str, list[str]]) -> RetrainRequest:
    """RetrainRequest's settings from query parameters (strings), for a text/csv body.

    The same schema as the JSON body, read laxly ("0.01" is a float, "true" a boolean); the
    data fields come from the body and ``target`` is the CSV's, so neither is taken here.
    """
    details: list[dict[str, Any]] = [
        {"loc": ["query", name], "msg": "given more than once"}
        for name, values in query.items()
        if len(values) > 1
    ] + [
        {"loc": ["query", name], "msg": "comes from the CSV body, not the query"}
        for name in query
        if name in _DATA_FIELDS
    ]
    if details:
        raise ValidationFailed("the query is invalid", details)
    settings: dict[str, Any] = {}
    for name, values in query.items():
        if name.startswith(HIDDEN_PREFIX):  # hidden_units=64 is {"hidden": {"units": 64}}
            settings.setdefault("hidden", {})[name.removeprefix(HIDDEN_PREFIX)] = values[0]
        elif name != CSV_TARGET_PARAMETER:
            settings[name] = values[0]
    try:
        return RetrainRequest.model_validate(settings, strict=False)
    except ValidationError as exc:
        raise ValidationFailed(
            "the query is invalid",
            [
                {
                    "loc": ["query", *_query_loc(e["loc"])],
                    "msg": e["msg"].removeprefix("Value error, "),
                }
                for e in exc.errors(include_url=False, include_input=False)
            ],
        ) from None


HIDDEN_PREFIX = "hidden_"


def _query_loc(loc: tuple[str | int, ...]) -> list[str | int]:
    """A query parameter's name for an error's loc: ("hidden", "units") is hidden_units."""
    if len(loc) >= 2 and loc[0] == "hidden":
        return [f"{HIDDEN_PREFIX}{loc[1]}", *loc[2:]]
    return list(loc)


class Champion(BaseModel):
    """The serving model, scored on the same rows as the new one (promote=if_better)."""

    version: int
    rows: int
    loss: float
    accuracy: float


class RetrainResponse(BaseModel):
    model_version: int = Field(description="The version serving after this call.")
    promoted: bool = Field(description="False only when promote=if_better kept the serving one.")
    reason: str = Field(description="Why the new model was promoted, or not.")
    loss: float = Field(description="Mean squared error on the training rows.")
    initial_loss: float
    iterations: int
    duration_seconds: float
    accuracy: float = Field(description="Accuracy on the training rows.")
    baseline_accuracy: float = Field(description="The majority class's, on the training rows.")
    validation: Validation | None = Field(description="Held-out scores; null without a split.")
    standardized: bool
    champion: Champion | None = Field(
        None, description="The serving model's scores on the same rows, when compared."
    )
    warnings: list[str] = Field(description="Plain-words notes on a forced, poor run.")


class RollbackRequest(Request):
    version: int = Field(ge=1, description="A kept version to serve again, as a new version.")


class HiddenInfo(BaseModel):
    """The stored hidden layer, without its weights."""

    units: int
    activation: str
    seed: int


class ModelInfo(BaseModel):
    version: int
    n_inputs: int
    weights: list[float]
    training: TrainingMetadata
    scaling: StoredScaling | None = Field(
        description="Standardization applied to raw rows before the weights; null for none."
    )
    feature_names: list[str] | None
    bias: float | None = Field(description="The intercept; null for none (the article's).")
    hidden: HiddenInfo | None = Field(
        description="The fixed hidden layer in front of the weights; null for none."
    )
    kept_versions: list[int]


class Index(BaseModel):
    name: str
    version: str = Field(description="The service's version.")
    model_version: int | None = Field(
        description="The serving model version; null while none is loaded."
    )
    links: dict[str, str] = Field(
        description="Where to go next, by name: docs (when enabled), openapi, model, readyz, "
        "metrics, v2."
    )


class Health(BaseModel):
    status: Literal["ok", "ready"]
    model_version: int | None = None
    store: Literal["up", "down"] | None = Field(
        None,
        description="Readiness only: whether the model store answers. While it is down the "
        "held model is still served, and retrain and rollback answer 503.",
    )


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
