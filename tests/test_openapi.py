"""The OpenAPI document is generated from the schemas and covers exactly the app's routes."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from service.openapi import document


def _flask_to_openapi(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_document_is_valid_openapi_3_1(client: FlaskClient) -> None:
    served = client.get("/openapi.json").get_json()
    assert served["openapi"].startswith("3.1")
    validate(served)


def test_every_route_is_documented_and_every_documented_path_exists(app: Flask) -> None:
    routes = {
        (_flask_to_openapi(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    documented = {(path, method) for path, item in document()["paths"].items() for method in item}
    assert routes == documented


def test_request_schemas_come_from_pydantic() -> None:
    schemas = document()["components"]["schemas"]
    predict = schemas["PredictRequest"]
    assert predict["required"] == ["inputs"]
    assert predict["additionalProperties"] is False
    assert predict["properties"]["inputs"]["items"]["items"]["type"] == "number"
    assert schemas["ErrorResponse"]["properties"]["error"]["$ref"].endswith("ErrorBody")


def test_retrain_documents_the_csv_body_and_its_query_parameters() -> None:
    operation = document()["paths"]["/admin/retrain"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"application/json", "text/csv"}
    assert content["text/csv"]["schema"]["type"] == "string"
    query = {p["name"]: p["schema"] for p in operation["parameters"] if p["in"] == "query"}
    body = document()["components"]["schemas"]["RetrainRequest"]["properties"]
    # every setting of the JSON body, the target column, and none of the data fields
    assert set(query) == set(body) - {"inputs", "targets", "feature_names"} | {"target"}
    assert query["standardize"]["type"] == "boolean"
    assert query["validation_fraction"] == {"type": "number", "minimum": 0, "maximum": 0.5}
    assert query["promote"]["enum"] == ["always", "if_better"]
    for name in ("standardize", "validation_fraction", "promote", "feature_names"):
        assert name in body
