"""Blueprint: the public prediction API. Handlers only translate HTTP."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app

from ..schemas import EvaluateRequest, PredictRequest
from ..serving import ModelServer
from .web import array_fields, json_response, parse_general, parse_json, request_json_body

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


def predicted(model_server: ModelServer, body: bytes) -> dict[str, Any]:
    """What /predict answers to a JSON body (PredictResponse's fields): for this view and
    http/lane.py alike."""
    limit = _batch_limit(model_server)
    # A single row costs more in pydantic's model_construct than in the model: none is built.
    fast = array_fields(PredictRequest, body, limit["max_rows"])
    if fast is not None:
        return model_server.predict(fast["inputs"])
    return model_server.predict(parse_general(PredictRequest, body, limit).inputs)


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
