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
