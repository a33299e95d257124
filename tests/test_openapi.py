"""The OpenAPI document is generated from the schemas and covers exactly the app's routes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from pydantic import ValidationError

from service.app import OPERATIONS
from service.app import openapi_document as document
from service.http.openapi import RETRAIN_EXAMPLE, Operation
from service.model.neuron import CLASSIC_INPUTS, CLASSIC_TARGETS
from service.oip.codec import to_matrix
from service.oip.schemas import InferenceRequest
from service.schemas import PredictRequest

from .conftest import AUTH


def _flask_to_openapi(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_document_is_valid_openapi_3_1(client: FlaskClient) -> None:
    served = client.get("/openapi.json").get_json()
    assert served["openapi"].startswith("3.1")
    validate(served)


def test_every_route_is_documented_and_every_documented_path_exists(app: Flask) -> None:
    # The interactive page and its assets are what renders the API, not part of it (as in
    # FastAPI); every other route is documented.
    routes = {
        (_flask_to_openapi(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static" and not rule.endpoint.startswith("docs.")
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    documented = {(path, method) for path, item in document()["paths"].items() for method in item}
    assert routes == documented
    assert not any(path.startswith("/docs") for path, _ in documented)
    assert {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith("docs.")}


def test_request_schemas_come_from_pydantic() -> None:
    schemas = document()["components"]["schemas"]
    predict = schemas["PredictRequest"]
    assert predict["required"] == ["inputs"]
    assert predict["additionalProperties"] is False
    assert predict["properties"]["inputs"]["items"]["items"]["type"] == "number"
    assert schemas["ErrorResponse"]["properties"]["error"]["$ref"].endswith("ErrorBody")


# -- the examples the interactive page (/docs) sends on "Try it out" then "Execute" ----------

REFERENCE = 0.99993704  # the article's published figure for [1, 0, 0]


def _examples() -> list[tuple[Operation, dict[str, Any]]]:
    return [(op, op.example) for op in OPERATIONS if op.example is not None]


def test_every_request_body_has_an_example_in_the_served_document(client: FlaskClient) -> None:
    served = client.get("/openapi.json").get_json()
    with_body = [op for op in OPERATIONS if op.request is not None]
    assert with_body and [op for op, _ in _examples()] == with_body
    for op in with_body:
        media = served["paths"][op.path][op.method]["requestBody"]["content"]["application/json"]
        assert media["example"] == op.example, op.path


@pytest.mark.parametrize(("op", "example"), _examples(), ids=lambda v: getattr(v, "path", ""))
def test_each_example_validates_through_the_service_schemas(
    op: Operation, example: dict[str, Any]
) -> None:
    # Way 1: the pydantic request model the handler uses, with the handler's context.
    assert op.request is not None
    parsed = op.request.model_validate(example, context={"max_rows": 10_000})
    if isinstance(parsed, InferenceRequest):  # the V2 tensor check lives below the envelope
        assert to_matrix(parsed, 10_000).tolist() == [[1.0, 0.0, 0.0]]
    # Way 2: the JSON Schema the document publishes for that body (JSON Schema 2020-12).
    doc = document()
    body_schema = doc["paths"][op.path][op.method]["requestBody"]["content"]["application/json"]
    schema = {"components": doc["components"], **body_schema["schema"]}
    Draft202012Validator(schema).validate(example)


def test_the_examples_can_fail_validation() -> None:
    """The check above is not vacuous: a broken example is refused both ways."""
    broken = {"inputs": [[1, True, 0]], "extra": 1}
    with pytest.raises(ValidationError):
        PredictRequest.model_validate(broken, context={"max_rows": 10_000})
    doc = document()
    schema = {"components": doc["components"], "$ref": "#/components/schemas/PredictRequest"}
    assert not Draft202012Validator(schema).is_valid(broken)


def test_each_example_executes_unchanged_against_the_app(client: FlaskClient) -> None:
    """What "Execute" sends (the example body, path parameters, the token) answers its success
    status: 200, or 202 for a job (queued, as the answer says)."""
    doc = document()
    answers: dict[str, Any] = {}
    for op, example in _examples():
        spec = doc["paths"][op.path][op.method]
        path = op.path
        for parameter in spec.get("parameters", ()):
            if parameter["in"] == "path":
                path = path.replace(f"{{{parameter['name']}}}", parameter["example"])
        headers = AUTH if "security" in spec else {}
        response = client.post(path, json=example, headers=headers)
        assert response.status_code == op.ok, (path, response.get_json())
        answers[path] = response.get_json()
    assert answers["/predict"]["predictions"][0] == pytest.approx(REFERENCE, abs=1e-8)
    assert answers["/v2/models/neuron/infer"]["outputs"][0]["data"][0] == pytest.approx(
        REFERENCE, abs=1e-8
    )
    assert answers["/evaluate"]["accuracy"] == 1.0
    # The retrain example is the classic set with the defaults: the default model again.
    assert answers["/admin/retrain"]["model_version"] == 2
    assert RETRAIN_EXAMPLE["inputs"] == [list(row) for row in CLASSIC_INPUTS]
    assert RETRAIN_EXAMPLE["targets"] == list(CLASSIC_TARGETS)
    assert answers["/admin/rollback"]["training"]["rolled_back_to"] == 1
    assert answers["/admin/jobs"]["state"] == "queued"


def test_path_parameter_examples_name_the_served_model(client: FlaskClient) -> None:
    for path in ("/v2/models/neuron", "/v2/models/neuron/versions/1"):
        assert path in _example_paths()
        assert client.get(path).status_code == 200


def _example_paths() -> set[str]:
    out = set()
    for path, item in document()["paths"].items():
        for spec in item.values():
            for parameter in spec.get("parameters", ()):
                if parameter["in"] == "path":
                    path = path.replace(f"{{{parameter['name']}}}", parameter["example"])
        out.add(path)
    return out


def test_admin_operations_declare_bearer_security() -> None:
    doc = document()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The admin token (NEURON_ADMIN_TOKEN).",
    }
    for path, item in doc["paths"].items():
        for spec in item.values():
            assert (spec.get("security") == [{"bearer": []}]) == path.startswith("/admin/")


def test_retrain_documents_the_csv_body_and_its_query_parameters() -> None:
    operation = document()["paths"]["/admin/retrain"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"application/json", "text/csv"}
    assert content["text/csv"]["schema"]["type"] == "string"
    query = {p["name"]: p["schema"] for p in operation["parameters"] if p["in"] == "query"}
    body = document()["components"]["schemas"]["RetrainRequest"]["properties"]
    # every setting of the JSON body, the target column, and none of the data fields; the
    # hidden layer's settings flattened (hidden_units=64 is {"hidden": {"units": 64}})
    hidden = document()["components"]["schemas"]["HiddenRequest"]["properties"]
    assert set(query) == set(body) - {"inputs", "targets", "feature_names", "hidden"} | {
        "target"
    } | {f"hidden_{name}" for name in hidden}
    assert query["hidden_units"] == {"type": "integer", "minimum": 1}
    assert query["hidden_activation"] == {"const": "tanh", "type": "string"}
    assert query["standardize"]["type"] == "boolean"
    assert query["validation_fraction"] == {"type": "number", "minimum": 0, "maximum": 0.5}
    assert query["promote"]["enum"] == ["always", "if_better"]
    for name in ("standardize", "validation_fraction", "promote", "feature_names"):
        assert name in body
