"""Blueprint: the public prediction API. Handlers only translate HTTP."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from .schemas import EvaluateRequest, PredictRequest
from .serving import ModelServer
from .web import json_response, parse_json

bp = Blueprint("api", __name__)


def server() -> ModelServer:
    return current_app.extensions["neuron"]  # type: ignore[no-any-return]


def _batch_limit() -> dict[str, int]:
    return {"max_rows": server().settings.max_batch}


@bp.post("/predict")
def predict() -> Response:
    return json_response(server().predict(parse_json(PredictRequest, _batch_limit())))


@bp.post("/evaluate")
def evaluate() -> Response:
    return json_response(server().evaluate(parse_json(EvaluateRequest, _batch_limit())))


@bp.get("/model")
def model() -> Response:
    return json_response(server().info())
