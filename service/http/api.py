"""Blueprint: the public prediction API. Handlers only translate HTTP."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from ..schemas import EvaluateRequest, PredictRequest, PredictResponse
from ..serving import ModelServer
from .web import json_response, parse_body, parse_json, request_json_body

bp = Blueprint("api", __name__)

PREDICT_RULE = "/predict"  # also http/lane.py's path, and the endpoint label of its metrics


def server() -> ModelServer:
    return current_app.extensions["neuron"]  # type: ignore[no-any-return]


def _batch_limit(model_server: ModelServer) -> dict[str, int]:
    return {"max_rows": model_server.settings.max_batch}


# One look-up of the app's server per request: each goes through werkzeug's context proxy.
@bp.post(PREDICT_RULE)
def predict() -> Response:
    model_server = server()
    return json_response(predicted(model_server, request_json_body()))


def predicted(model_server: ModelServer, body: bytes) -> PredictResponse:
    """What /predict answers to a JSON body: for this view and http/lane.py alike."""
    return model_server.predict(parse_body(PredictRequest, body, _batch_limit(model_server)))


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
