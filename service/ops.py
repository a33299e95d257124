"""Blueprint: operations — liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, Response

from . import metrics, openapi
from .api import server
from .schemas import Health
from .web import json_response

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process answers; says nothing of the model."""
    return json_response(Health(status="ok"))


@bp.get("/readyz")
def readyz() -> Response:
    """200 once a model is loaded (even while the store is down: it says so), 503 before."""
    model_server = server()
    version = model_server.ready().version
    store = "up" if model_server.store.up() else "down"
    return json_response(Health(status="ready", model_version=version, store=store))


@bp.get("/metrics")
def prometheus() -> Response:
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)


@bp.get("/openapi.json")
def openapi_document() -> Response:
    return json_response(openapi.document())
