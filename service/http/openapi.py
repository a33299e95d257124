"""The OpenAPI 3.1 document, generated from the pydantic schemas and tables of operations.

This module holds the builder and the table of the API of our own (model, admin, operations);
the V2 routes bring their table (oip.openapi) and the app puts the two together.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .. import __version__
from ..drift import DriftReport
from ..jobs.job import JobInfo, JobList
from ..schemas import (
    CSV_TARGET_PARAMETER,
    ErrorResponse,
    EvaluateRequest,
    EvaluateResponse,
    Health,
    Index,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    RetrainRequest,
    RetrainResponse,
    RollbackRequest,
)

_REASONS = {
    400: "Malformed JSON or CSV (on /v2: any bad inference request)",
    401: "Missing or wrong bearer token",
    403: "Admin endpoints disabled (no token configured)",
    404: "Not found",
    405: "Method not allowed",
    409: "The job has already ended",
    413: "Body or batch too large",
    415: "Body is not application/json (or, where accepted, UTF-8 text/csv)",
    422: "Invalid values",
    500: "Internal error",
    503: "Not ready, or the model directory is unavailable",
    507: "The model directory is full",
}
_ALWAYS = (404, 405, 500)
_JSON_BODY = (400, 413, 415, 422)
_PATH_PARAMETER = re.compile(r"\{(\w+)\}")

# Request bodies the interactive page (/docs) fills in, so that "Try it out" then "Execute"
# works unchanged; tests/test_openapi.py validates each through the service's own schemas.
PREDICT_EXAMPLE = {"inputs": [[1, 0, 0]]}
EVALUATE_EXAMPLE = {"inputs": [[1, 0, 0], [0, 1, 1]], "targets": [1, 0]}
RETRAIN_EXAMPLE = {  # the classic four rows, trained with the defaults: the default model again
    "inputs": [[0, 0, 1], [1, 1, 1], [1, 0, 1], [0, 1, 1]],
    "targets": [0, 1, 1, 0],
    "seed": 1,
}
ROLLBACK_EXAMPLE = {"version": 1}
PARAMETER_EXAMPLES = {"job_id": "0123456789abcdef0123456789abcdef"}
TAGS = (
    ("model", "Predict, evaluate and inspect the serving model"),
    ("admin", "Retrain and roll back; send the admin token with Authorize"),
    ("operations", "Index, health, metrics and this document"),
    ("v2", "The Open Inference Protocol (KServe V2)"),
)


@dataclass(frozen=True)
class Operation:
    path: str
    method: str
    summary: str
    response: type[BaseModel] | None
    request: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    body_required: bool = True
    admin: bool = False
    media_type: str = "application/json"
    error_response: type[BaseModel] = ErrorResponse
    example: dict[str, Any] | None = None
    ok: int = 200  # the status of success (202: accepted, done later)
    html: bool = False  # also answers text/html to a client asking for it first
    csv: bool = False  # also takes a text/csv body, its settings as query parameters


OPERATIONS = (
    Operation(
        "/predict", "post", "Probabilities for a batch of rows", PredictResponse,
        PredictRequest, (*_JSON_BODY, 503), example=PREDICT_EXAMPLE,
    ),
    Operation(
        "/evaluate", "post", "Loss and accuracy on labelled rows", EvaluateResponse,
        EvaluateRequest, (*_JSON_BODY, 503), example=EVALUATE_EXAMPLE,
    ),
    Operation("/model", "get", "Metadata of the serving version", ModelInfo, errors=(503,)),
    Operation(
        "/model/drift", "get", "Input drift of recent predictions against the training rows",
        DriftReport, errors=(503,),
    ),
    Operation("/healthz", "get", "Liveness", Health),
    Operation("/readyz", "get", "Readiness: 503 until a model is loaded", Health, errors=(503,)),
    Operation(
        "/metrics", "get", "Prometheus exposition", None, media_type="text/plain"
    ),
    Operation("/openapi.json", "get", "This document", None),
    Operation(
        "/", "get", "Index: name, version, serving model version and links", Index, html=True
    ),
    Operation(
        "/admin/retrain", "post", "Train and promote a new version", RetrainResponse,
        RetrainRequest, (*_JSON_BODY, 401, 403, 503, 507), body_required=False, admin=True,
        example=RETRAIN_EXAMPLE,
        csv=True,
    ),
    Operation(
        "/admin/rollback", "post", "Serve a kept version again, as a new version", ModelInfo,
        RollbackRequest, (*_JSON_BODY, 401, 403, 404, 503, 507), admin=True,
        example=ROLLBACK_EXAMPLE,
    ),
    Operation(
        "/admin/jobs", "post",
        "Queue a training job: the body (JSON, or CSV of any size within the job limits) is "
        "streamed to disk and trained in the training process",
        JobInfo, RetrainRequest, (*_JSON_BODY, 401, 403, 503, 507), body_required=False,
        admin=True, example=RETRAIN_EXAMPLE, csv=True, ok=202,
    ),
    Operation("/admin/jobs", "get", "Recent training jobs", JobList, errors=(401, 403, 503),
              admin=True),
    Operation(
        "/admin/jobs/{job_id}", "get", "One training job: state, progress, result or error",
        JobInfo, errors=(401, 403, 503), admin=True,
    ),
    Operation(
        "/admin/jobs/{job_id}", "delete",
        "Cancel a training job: a queued one at once, a running one within a second",
        JobInfo, errors=(401, 403, 409, 503), admin=True, ok=202,
    ),
)  # fmt: skip


def _schemas(operations: Sequence[Operation]) -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Any]] = [(ErrorResponse, "serialization")]
    for op in operations:
        if op.error_response is not ErrorResponse:
            models.append((op.error_response, "serialization"))
        if op.request is not None:
            models.append((op.request, "validation"))
        if op.response is not None:
            models.append((op.response, "serialization"))
    _, top = models_json_schema(models, ref_template="#/components/schemas/{model}")
    return dict(top.get("$defs", {}))


_CSV_BODY = {
    "type": "string",
    "description": "UTF-8 CSV: a header row naming the columns, then one row of numbers per "
    "example; the target column (the last, unless the target parameter names another) holds "
    "0 or 1. Training settings come as query parameters.",
}
_CSV_DATA_FIELDS = ("inputs", "targets", "feature_names")


def _csv_parameters(request: type[BaseModel]) -> list[dict[str, Any]]:
    """The query parameters of a text/csv body: the target column, then the JSON settings.

    A nested setting is flattened: hidden's units is the parameter hidden_units.
    """
    document = request.model_json_schema()
    fields: list[tuple[str, dict[str, Any]]] = []
    for name, schema in document["properties"].items():
        nested = _nested(schema, document.get("$defs", {}))
        if nested is None:
            fields.append((name, schema))
        else:
            fields += [(f"{name}_{sub}", sub_schema) for sub, sub_schema in nested.items()]
    target = {
        "name": CSV_TARGET_PARAMETER,
        "in": "query",
        "required": False,
        "description": "text/csv only: the name of the target column (default: the last).",
        "schema": {"type": "string"},
    }
    return [target] + [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": f"text/csv only: {schema.get('description', name)}",
            "schema": _query_schema(schema),
        }
        for name, schema in fields
        if name not in _CSV_DATA_FIELDS
    ]


def _nested(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any] | None:
    """The properties of the model a field holds (or null), else None."""
    for choice in [schema, *schema.get("anyOf", ())]:
        ref = choice.get("$ref", "")
        if ref.startswith("#/$defs/"):
            properties: dict[str, Any] = defs[ref.removeprefix("#/$defs/")]["properties"]
            return properties
    return None


def _query_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A body field's schema as a query parameter's: a query cannot send null, only omit it."""
    choices = [c for c in schema.get("anyOf", ()) if c.get("type") != "null"]
    kept = {k: v for k, v in schema.items() if k not in ("description", "title", "anyOf")}
    if len(choices) == 1:
        kept |= choices[0]
    # No default here: Swagger UI fills a parameter's default into the form and sends it, and a
    # query parameter beside a JSON body is refused. The body schema documents the defaults.
    kept.pop("default", None)
    return kept


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(op: Operation, parameter_examples: Mapping[str, str]) -> dict[str, Any]:
    if op.response is not None:
        ok_schema = _ref(op.response)
    else:  # /metrics is text; /openapi.json is this document, a JSON object
        ok_schema = {"type": "object" if op.media_type == "application/json" else "string"}
    ok_content: dict[str, Any] = {op.media_type: {"schema": ok_schema}}
    if op.html:
        ok_content["text/html"] = {"schema": {"type": "string"}}
    ok = "OK" if op.ok == 200 else "Accepted"
    responses: dict[str, Any] = {str(op.ok): {"description": ok, "content": ok_content}}
    for status in sorted({*op.errors, *_ALWAYS}):
        responses[str(status)] = {
            "description": _REASONS[status],
            "content": {"application/json": {"schema": _ref(op.error_response)}},
        }
    spec: dict[str, Any] = {"summary": op.summary, "tags": [_tag(op.path)], "responses": responses}
    parameters = _PATH_PARAMETER.findall(op.path)
    if parameters:
        spec["parameters"] = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "example": parameter_examples[name],
            }
            for name in parameters
        ]
    if op.request is not None:
        body: dict[str, Any] = {"schema": _ref(op.request)}
        if op.example is not None:
            body["example"] = op.example
        spec["requestBody"] = {"required": op.body_required, "content": {"application/json": body}}
    if op.csv and op.request is not None:
        spec["requestBody"]["content"]["text/csv"] = {"schema": _CSV_BODY}
        spec["parameters"] = [*spec.get("parameters", ()), *_csv_parameters(op.request)]
    if op.admin:
        spec["security"] = [{"bearer": []}]
    return spec


def _tag(path: str) -> str:
    """The group the interactive page shows an operation in."""
    if path.startswith("/v2"):
        return "v2"
    if path.startswith("/admin/"):
        return "admin"
    if path in ("/predict", "/evaluate", "/model", "/model/drift"):
        return "model"
    return "operations"


def document(
    operations: Sequence[Operation], parameter_examples: Mapping[str, str]
) -> dict[str, Any]:
    """The document of ``operations``; a path parameter's example from ``parameter_examples``."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method] = _operation(op, parameter_examples)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "neuron-service",
            "version": __version__,
            "description": "One sigmoid neuron, served. The /admin endpoints need the admin "
            "token: Authorize, or an Authorization: Bearer header.",
        },
        "tags": [{"name": name, "description": text} for name, text in TAGS],
        "paths": paths,
        "components": {
            "schemas": _schemas(operations),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The admin token (NEURON_ADMIN_TOKEN).",
                }
            },
        },
    }
