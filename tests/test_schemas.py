"""The request schemas: pydantic envelopes, numpy-checked matrices."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from service.schemas import EvaluateRequest, PredictRequest, RetrainRequest

BAD_INPUTS = [
    pytest.param([], id="empty batch"),
    pytest.param([[]], id="empty row"),
    pytest.param([[1, 0], [1]], id="ragged rows"),
    pytest.param([[1, True, 0]], id="boolean among numbers"),
    pytest.param([[True, False, True]], id="all booleans"),
    pytest.param([[1, "0", 0]], id="numeric string"),
    pytest.param([[1, None, 0]], id="null"),
    pytest.param([[[1, 0, 0]]], id="nested one level too deep"),
    pytest.param([1, 0, 0], id="flat list"),
    pytest.param("[[1, 0, 0]]", id="string"),
    pytest.param({"0": [1, 0, 0]}, id="object"),
    pytest.param([[1e308 * 10, 0, 0]], id="infinity"),
    pytest.param([[float("nan"), 0, 0]], id="nan"),
]


@pytest.mark.parametrize("inputs", BAD_INPUTS)
def test_bad_matrices_are_refused(inputs: object) -> None:
    with pytest.raises(ValidationError) as caught:
        PredictRequest.model_validate({"inputs": inputs})
    assert caught.value.errors()[0]["loc"] == ("inputs",)


@pytest.mark.parametrize("inputs", [[[1, True, 0]], [[1, False, 0]]])
def test_booleans_are_caught_only_when_the_body_may_hold_them(inputs: object) -> None:
    """The fast path is sound only because the route says whether 'true'/'false' occur."""
    with pytest.raises(ValidationError):
        PredictRequest.model_validate({"inputs": inputs}, context={"numbers_only": False})


def test_good_matrix_becomes_float64() -> None:
    request = PredictRequest.model_validate({"inputs": [[1, 0, 0], [0.5, -0.0, 2**53]]})
    assert request.inputs.dtype == np.float64
    assert request.inputs.shape == (2, 3)
    assert request.inputs[1, 2] == 2.0**53


def test_row_limit_comes_from_the_context() -> None:
    rows = [[1, 0, 0]] * 11
    PredictRequest.model_validate({"inputs": rows}, context={"max_rows": 11})
    with pytest.raises(ValidationError, match="at most 10 rows"):
        PredictRequest.model_validate({"inputs": rows}, context={"max_rows": 10})


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        PredictRequest.model_validate({"inputs": [[1]], "extra": 1})


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ([0, 1.5], "in \\[0, 1\\]"),
        ([0, -0.1], "in \\[0, 1\\]"),
        ([[0], [1]], "flat list"),
        ([0, 1, 1], "2 rows of inputs but 3 targets"),
        ([True, False], "number"),
    ],
)
def test_bad_targets_are_refused(targets: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        EvaluateRequest.model_validate({"inputs": [[1, 0], [0, 1]], "targets": targets})


def test_retrain_takes_inputs_and_targets_together() -> None:
    assert RetrainRequest.model_validate({}).inputs is None
    with pytest.raises(ValidationError, match="come together"):
        RetrainRequest.model_validate({"inputs": [[1, 0]]})
    request = RetrainRequest.model_validate({"inputs": [[1, 0]], "targets": [1]})
    assert request.targets is not None and request.targets.shape == (1, 1)


@pytest.mark.parametrize(
    "field",
    [
        {"iterations": 0},
        {"iterations": True},
        {"learning_rate": 0},
        {"learning_rate": float("inf")},
        {"seed": -1},
        {"tolerance": 0},
    ],
)
def test_bad_training_parameters_are_refused(field: dict) -> None:
    with pytest.raises(ValidationError):
        RetrainRequest.model_validate(field)
