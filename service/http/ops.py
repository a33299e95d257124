"""Blueprint: operations — the index, liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from .. import __version__, metrics
from ..drift import DriftCollector
from ..jobs.exposition import JobsCollector
from ..schemas import Health, Index
from . import docs
from .api import server
from .web import json_response

bp = Blueprint("ops", __name__)

SERVICE_NAME = "neuron-service"
_LINKS = {
    "openapi": "/openapi.json",
    "model": "/model",
    "readyz": "/readyz",
    "metrics": "/metrics",
    "v2": "/v2",
}


@bp.get("/")
def index() -> Response:
    """Where to go next, as JSON; as a page of links for a client asking for HTML first."""
    links = {"docs": "/docs", **_LINKS} if "docs" in current_app.blueprints else dict(_LINKS)
    body = Index(
        name=SERVICE_NAME,
        version=__version__,
        model_version=server().serving_version(),
        links=links,
    )
    if request.accept_mimetypes.best_match(("application/json", "text/html")) == "text/html":
        response = Response(docs.index_page(body), content_type="text/html; charset=utf-8")
        response.headers["Content-Security-Policy"] = docs.INDEX_CSP
    else:
        response = json_response(body)
    response.vary.add("Accept")
    return response


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
    model_server = server()
    drift = DriftCollector(
        model_server.drift_report_if_ready, model_server.settings.drift_top_features
    )
    jobs = current_app.extensions.get("neuron_jobs")
    extra = (drift,) if jobs is None else (drift, JobsCollector(jobs.states))
    body, content_type = metrics.render(*extra)
    return Response(body, content_type=content_type)


@bp.get("/openapi.json")
def openapi_document() -> Response:
    return json_response(current_app.extensions["neuron_openapi"]())
