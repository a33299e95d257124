"""The model document: versioned, checksummed JSON; encode, decode and verify."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import CorruptModel
from ..model.hidden import HiddenLayer
from ..model.neuron import Neuron, Scaling
from ..model.statistics import Bins, FeatureStatistics

FORMAT = "neuron-model"
FORMAT_VERSION = 1


def _all_finite(values: list[float]) -> list[float]:
    if not np.all(np.isfinite(values)):
        raise ValueError("values must be finite")
    return values


class StoredScaling(BaseModel):
    """Standardization fitted on the training rows: inputs become (x - mean) / scale."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: list[float]
    scale: list[float]

    @field_validator("mean", "scale")
    @classmethod
    def _finite(cls, values: list[float]) -> list[float]:
        return _all_finite(values)

    @field_validator("scale")
    @classmethod
    def _positive(cls, values: list[float]) -> list[float]:
        if not all(value > 0 for value in values):
            raise ValueError("every scale must be positive")
        return values


class StoredHidden(BaseModel):
    """A fixed random hidden layer: tanh(x @ weights + biases), as drawn, never drawn again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    units: int = Field(ge=1)
    activation: Literal["tanh"]
    seed: int = Field(ge=0, description="The seed it was drawn with (to say where it came from).")
    weights: list[list[float]] = Field(description="n_inputs rows of `units` weights.")
    biases: list[float] = Field(description="One per unit.")

    @field_validator("weights")
    @classmethod
    def _finite_rows(cls, rows: list[list[float]]) -> list[list[float]]:
        for row in rows:
            _all_finite(row)
        return rows

    @field_validator("biases")
    @classmethod
    def _finite(cls, values: list[float]) -> list[float]:
        return _all_finite(values)

    def shape_errors(self, n_inputs: int) -> list[str]:
        errors = [] if len(self.weights) == n_inputs else ["hidden.weights do not match n_inputs"]
        if any(len(row) != self.units for row in self.weights):
            errors.append("hidden.weights rows do not match hidden.units")
        if len(self.biases) != self.units:
            errors.append("hidden.biases do not match hidden.units")
        return errors

    def layer(self) -> HiddenLayer:
        weights = np.array(self.weights, dtype=np.float64).reshape(-1, self.units)
        return HiddenLayer(weights, np.array(self.biases, dtype=np.float64), "tanh", self.seed)

    @classmethod
    def of(cls, layer: HiddenLayer) -> StoredHidden:
        return cls(
            units=layer.units,
            activation=layer.activation,
            seed=layer.seed,
            weights=layer.weights.tolist(),
            biases=layer.biases.tolist(),
        )


class Validation(BaseModel):
    """Scores on held-out rows the model never trained on, beside a constant answer's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: int = Field(ge=1, description="Held-out rows.")
    loss: float = Field(ge=0, description="Mean squared error on the held-out rows.")
    accuracy: float = Field(ge=0, le=1, description="Share of held-out rows on the right side.")
    baseline_accuracy: float = Field(
        ge=0, le=1, description="Accuracy of always answering the training rows' majority class."
    )


class StoredFeatureStatistics(BaseModel):
    """One feature of the training rows: moments, range, quantile bin edges and their shares."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    count: int = Field(ge=1, description="Training rows.")
    mean: float
    std: float = Field(ge=0)
    min: float
    max: float
    edges: list[float] = Field(
        description="Bin edges, increasing: bin i holds values with i edges at or below them."
    )
    fractions: list[float] = Field(description="Training rows' share per bin: one more than edges.")

    @field_validator("edges")
    @classmethod
    def _increasing(cls, edges: list[float]) -> list[float]:
        if any(low >= high for low, high in pairwise(edges)):
            raise ValueError("edges must increase")
        return edges

    @field_validator("fractions")
    @classmethod
    def _shares(cls, fractions: list[float]) -> list[float]:
        if any(share < 0 for share in fractions) or abs(sum(fractions) - 1) > 1e-9:
            raise ValueError("fractions must be shares summing to 1")
        return fractions

    def errors(self) -> list[str]:
        if len(self.fractions) != len(self.edges) + 1:
            return ["input_statistics fractions must be one more than edges"]
        return [] if self.min <= self.max else ["input_statistics min above max"]

    def statistics(self) -> FeatureStatistics:
        lists = {"edges", "fractions"}
        return FeatureStatistics(
            **self.model_dump(exclude=lists), edges=(*self.edges,), fractions=(*self.fractions,)
        )

    @classmethod
    def of(cls, feature: FeatureStatistics) -> StoredFeatureStatistics:
        return cls.model_validate(asdict(feature))


class TrainingMetadata(BaseModel):
    """How a model version came to be."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["default", "retrain", "rollback"]
    seed: int
    iterations: int = Field(ge=0)
    learning_rate: float
    loss: float = Field(ge=0, description="Mean squared error on the training data.")
    initial_loss: float = Field(ge=0)
    rows: int = Field(ge=1)
    data_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    trained_at: datetime
    duration_seconds: float = Field(ge=0)
    rolled_back_to: int | None = Field(None, description="For a rollback: the version copied.")
    # Added after format 1 was first written: optional, so older documents still load.
    accuracy: float | None = Field(None, ge=0, le=1, description="Accuracy on the training rows.")
    baseline_accuracy: float | None = Field(
        None, ge=0, le=1, description="The majority class's accuracy on the training rows."
    )
    validation_fraction: float = Field(0.0, ge=0, lt=1, description="Share of rows held out.")
    validation: Validation | None = Field(None, description="Held-out scores; null without one.")
    l2: float = Field(0.0, ge=0, description="The L2 penalty on the weights (not the bias).")
    refit: bool = Field(
        False, description="Trained again on every row (held-out ones too) after validation."
    )
    input_statistics: list[StoredFeatureStatistics] | None = Field(
        None,
        description="Per feature, the training rows' statistics: the baseline input drift is "
        "measured against. Null in documents written before it was stored.",
    )


class ModelDocument(BaseModel):
    """The persisted document, minus its checksum."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["neuron-model"]
    format_version: Literal[1]
    version: int = Field(ge=1)
    n_inputs: int = Field(ge=1)
    weights: list[float]
    training: TrainingMetadata
    scaling: StoredScaling | None = None  # optional: documents before standardization load
    feature_names: list[str] | None = None
    # Optional too: documents written before the intercept and the hidden layer load as before.
    bias: float | None = Field(None, allow_inf_nan=False, description="The intercept, if any.")
    hidden: StoredHidden | None = None

    @field_validator("weights")
    @classmethod
    def _finite(cls, weights: list[float]) -> list[float]:
        return _all_finite(weights)

    def shape_errors(self) -> list[str]:
        """What does not fit n_inputs: weights, scaling, feature names, the hidden layer."""
        if self.hidden is not None:
            errors = self.hidden.shape_errors(self.n_inputs)
            if len(self.weights) != self.hidden.units:
                errors.append("weights do not match hidden.units")
            sizes = {}
        else:
            errors, sizes = [], {"weights": len(self.weights)}
        if self.scaling is not None:
            sizes |= {
                "scaling.mean": len(self.scaling.mean),
                "scaling.scale": len(self.scaling.scale),
            }
        if self.feature_names is not None:
            sizes["feature_names"] = len(self.feature_names)
        statistics = self.training.input_statistics
        if statistics is not None:
            sizes["input_statistics"] = len(statistics)
            errors += [error for feature in statistics for error in feature.errors()]
        return errors + [
            f"{name} do not match n_inputs" for name, size in sizes.items() if size != self.n_inputs
        ]

    def neuron(self) -> Neuron:
        weights = np.array(self.weights, dtype=np.float64).reshape(-1, 1)
        scaling = None
        if self.scaling is not None:
            scaling = Scaling(np.array(self.scaling.mean), np.array(self.scaling.scale))
        hidden = None if self.hidden is None else self.hidden.layer()
        return Neuron(weights, scaling, self.bias, hidden)

    def bins(self) -> Bins | None:
        """The training bins live rows are counted in, or None for a document without them."""
        statistics = self.training.input_statistics
        return None if statistics is None else Bins([f.statistics() for f in statistics])


@dataclass(frozen=True)
class ModelRecord:
    """One whole stored version: its document and the neuron built from it."""

    document: ModelDocument
    neuron: Neuron
    bins: Bins | None = None

    @property
    def version(self) -> int:
        return self.document.version


def new_document(
    version: int,
    neuron: Neuron,
    training: TrainingMetadata,
    feature_names: list[str] | None = None,
) -> ModelDocument:
    """The document of a neuron about to be stored as this version."""
    scaling = neuron.scaling
    document = ModelDocument(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        version=version,
        n_inputs=neuron.n_inputs,
        weights=[float(w) for w in neuron.weights[:, 0]],
        training=training,
        scaling=None
        if scaling is None
        else StoredScaling(mean=scaling.mean.tolist(), scale=scaling.scale.tolist()),
        feature_names=feature_names,
        bias=neuron.bias,
        hidden=_stored_hidden(neuron),
    )
    if document.shape_errors():  # a caller's bug: never write what decode() would refuse
        raise ValueError("; ".join(document.shape_errors()))
    return document


def _stored_hidden(neuron: Neuron) -> StoredHidden | None:
    if neuron.hidden is None:
        return None
    if not isinstance(neuron.hidden, HiddenLayer):  # a caller's bug, like a shape error
        raise TypeError(f"cannot store a hidden layer of type {type(neuron.hidden).__name__}")
    return StoredHidden.of(neuron.hidden)


def data_digest(inputs: np.ndarray[Any, Any], targets: np.ndarray[Any, Any]) -> str:
    """sha256 of the training data as float64 bytes, shape included."""
    digest = hashlib.sha256()
    for array in (inputs, targets):
        array = np.ascontiguousarray(array, dtype=np.float64)
        digest.update(repr(array.shape).encode())
        digest.update(array.reshape(-1).view(np.uint8).data)  # tobytes()'s bytes, not copied
    return digest.hexdigest()


def canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def encode(document: ModelDocument) -> bytes:
    payload = document.model_dump(mode="json")
    checksum = hashlib.sha256(canonical(payload)).hexdigest()
    payload["checksum"] = {"algorithm": "sha256", "value": checksum}
    return _layout(payload)


def _layout(payload: dict[str, Any]) -> bytes:
    """A file's exact bytes: decode() demands them, so that even a changed space is caught."""
    return json.dumps(payload, sort_keys=True, indent=2, allow_nan=False).encode() + b"\n"


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed in a model document")


def decode(raw: bytes) -> ModelRecord:
    """Parse and verify a stored document; raises CorruptModel on any defect."""
    try:
        payload = json.loads(raw, parse_constant=_refuse_constant)
        if _layout(payload) != raw:
            raise CorruptModel("the file is not laid out as it was written")
        checksum = payload.pop("checksum")
        expected = hashlib.sha256(canonical(payload)).hexdigest()
        if checksum != {"algorithm": "sha256", "value": expected}:
            raise CorruptModel("checksum mismatch")
        document = ModelDocument.model_validate(payload)
    except CorruptModel:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, ValidationError) as exc:
        raise CorruptModel(f"unreadable model document: {exc}") from exc
    defects = document.shape_errors()
    if defects:
        raise CorruptModel("; ".join(defects))
    return ModelRecord(document, document.neuron(), document.bins())


def utc_now() -> datetime:
    return datetime.now(UTC)
