"""The model document: versioned, checksummed JSON; encode, decode and verify."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import CorruptModel
from ..neuron import Neuron

FORMAT = "neuron-model"
FORMAT_VERSION = 1


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


class ModelDocument(BaseModel):
    """The persisted document, minus its checksum."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["neuron-model"]
    format_version: Literal[1]
    version: int = Field(ge=1)
    n_inputs: int = Field(ge=1)
    weights: list[float]
    training: TrainingMetadata

    @field_validator("weights")
    @classmethod
    def _finite(cls, weights: list[float]) -> list[float]:
        if not np.all(np.isfinite(weights)):
            raise ValueError("weights must be finite")
        return weights


@dataclass(frozen=True)
class ModelRecord:
    """One whole stored version: its document and the neuron built from it."""

    document: ModelDocument
    neuron: Neuron

    @property
    def version(self) -> int:
        return self.document.version


def new_document(version: int, neuron: Neuron, training: TrainingMetadata) -> ModelDocument:
    """The document of a neuron about to be stored as this version."""
    return ModelDocument(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        version=version,
        n_inputs=neuron.n_inputs,
        weights=[float(w) for w in neuron.weights[:, 0]],
        training=training,
    )


def data_digest(inputs: np.ndarray[Any, Any], targets: np.ndarray[Any, Any]) -> str:
    """sha256 of the training data as float64 bytes, shape included."""
    digest = hashlib.sha256()
    for array in (inputs, targets):
        array = np.ascontiguousarray(array, dtype=np.float64)
        digest.update(repr(array.shape).encode())
        digest.update(array.tobytes())
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
    if len(document.weights) != document.n_inputs:
        raise CorruptModel("weights do not match n_inputs")
    weights = np.array(document.weights, dtype=np.float64).reshape(-1, 1)
    return ModelRecord(document, Neuron(weights))


def utc_now() -> datetime:
    return datetime.now(UTC)
