"""Blueprint: the public prediction API. Handlers only translate HTTP."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from ..schemas import EvaluateRequest, PredictRequest
from ..serving import ModelServer
from .web import json_response, parse_json

bp = Blueprint("api", __name__)


def server() -> ModelServer:
    return current_app.extensions["neuron"]  # type: ignore[no-any-return]


def _batch_limit(model_server: ModelServer) -> dict[str, int]:
    return {"max_rows": model_server.settings.max_batch}


# One look-up of the app's server per request: each goes through werkzeug's context proxy.
@bp.post("/predict")
def predict() -> Response:
    model_server = server()
    return json_response(
        model_server.predict(parse_json(PredictRequest, _batch_limit(model_server)))
    )


@bp.post("/evaluate")
def evaluate() -> Response:
    model_server = server()
    return json_response(
        model_server.evaluate(parse_json(EvaluateRequest, _batch_limit(model_server)))
    )


@bp.get("/model")
def model() -> Response:
    return json_response(server().info())


@bp.get("/model/drift")
def drift() -> Response:
    """Input drift of the recent window against the serving model's training rows."""
    return json_response(server().drift_report())
