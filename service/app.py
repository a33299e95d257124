"""create_app(settings=None): wires settings, the model server, blueprints, errors and hooks."""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from flask import Flask

from . import logs, oip
from .errors import ServiceError
from .http import admin, api, docs, jobs, openapi, ops
from .http.cors import Cors
from .http.encoding import BodyEncoding
from .http.lane import PredictLane
from .http.web import install_hooks, json_bytes, register_error_handlers
from .jobs import Jobs
from .oip import openapi as oip_openapi
from .serving import ModelServer
from .settings import Settings

log = logging.getLogger("neuron.app")

# Every operation of the routes create_app registers, in the OpenAPI document's order.
OPERATIONS = (*openapi.OPERATIONS, *oip_openapi.OPERATIONS)


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the whole app (served at /openapi.json)."""
    return openapi.document(
        OPERATIONS, {**oip_openapi.PARAMETER_EXAMPLES, **openapi.PARAMETER_EXAMPLES}
    )


def documented_statuses(path: str, method: str) -> set[int]:
    """Statuses the document promises for one operation (used by tests to keep it true)."""
    responses = openapi_document()["paths"][path][method.lower()]["responses"]
    return {int(code) for code in responses}


def _refusal(environ: dict[str, Any], error: ServiceError) -> tuple[int, bytes]:
    """A body refused before any route: in the protocol's error form under /v2, else ours."""
    path = environ.get("PATH_INFO", "")
    if path == oip.PREFIX or path.startswith(f"{oip.PREFIX}/"):
        status, answer = oip.error_answer(error)
        return status, answer.body
    return error.status, json_bytes(error.envelope())


def _install_lanes(app: Flask, server: ModelServer) -> None:
    """The plain-WSGI lanes in front of Flask, the hottest asked first: /predict, binary V2
    infer, JSON V2 infer (each passes what it does not take to the next, the last to Flask)."""
    json_infer = oip.JsonInferLane(app.wsgi_app, server)
    binary = oip.BinaryLane(json_infer, server)
    predict = PredictLane(binary, server)
    app.wsgi_app = predict  # type: ignore[method-assign]
    app.extensions["neuron_json_infer_lane"] = json_infer
    app.extensions["neuron_binary_lane"] = binary
    app.extensions["neuron_predict_lane"] = predict


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings()
    logs.configure(settings.log_level)
    app = Flask("neuron")
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        NEURON_METRICS=settings.metrics_enabled,
    )
    server = ModelServer(settings)
    token = settings.token()
    app.extensions["neuron"] = server
    app.extensions["neuron_token"] = None if token is None else token.encode()
    app.extensions["neuron_openapi"] = openapi_document
    app.extensions["neuron_jobs"] = Jobs(settings, server.store) if settings.jobs_enabled else None
    for blueprint in (api.bp, admin.bp, jobs.bp, ops.bp, oip.bp):
        app.register_blueprint(blueprint)
    if settings.docs_enabled:  # off: /docs and its assets are not routes at all (404)
        app.register_blueprint(docs.bp)
    register_error_handlers(app)
    _install_lanes(app, server)
    # Around the lanes too: a gzip body reaches every reader decoded, whichever serves it.
    app.wsgi_app = BodyEncoding(  # type: ignore[method-assign]
        app.wsgi_app, settings.max_body_bytes, _refusal, raw=jobs.bp.url_prefix
    )
    origins = settings.cors()
    if origins:  # around the lanes too: their answers get the same headers as Flask's
        app.wsgi_app = Cors(app.wsgi_app, origins, settings.cors_admin)  # type: ignore[method-assign]
    install_hooks(app)  # around the lanes too: their requests are logged and measured alike
    try:
        server.start()
    except Exception:
        # Stay up and say so: /readyz answers 503 and retries until a model loads.
        log.exception("no model could be loaded at start-up")
    return app
