"""Blueprint: authenticated administration — retrain and rollback."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, request

from ..errors import AdminDisabled, Unauthorized, UnsupportedMediaType, validation_error
from ..model.tabular import parse_csv
from ..schemas import CSV_TARGET_PARAMETER, RetrainRequest, RollbackRequest, retrain_settings
from .api import server
from .web import json_response, parse_json, read_json, validate

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def require_token() -> None:
    """Closed without a configured token; otherwise a constant-time bearer check."""
    expected: bytes | None = current_app.extensions["neuron_token"]
    if expected is None:
        raise AdminDisabled("the admin endpoints are disabled: no admin token is configured")
    scheme, _, supplied = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(supplied.strip().encode(), expected):
        raise Unauthorized("a valid bearer token is required")


@bp.post("/retrain")
def retrain() -> Response:
    """No body retrains on the classic set; JSON must be an object; text/csv brings a table."""
    if request.mimetype == "text/csv":
        return json_response(server().retrain(_csv_request()))
    if request.args:
        raise validation_error(
            "query parameters are read only with a text/csv body",
            ["query", next(iter(request.args))],
            "put training settings in the JSON body",
        )
    payload = read_json(optional=True)
    return json_response(
        server().retrain(validate(RetrainRequest, {} if payload is None else payload))
    )


def _csv_request() -> RetrainRequest:
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType("send text/csv as UTF-8")
    query = request.args.to_dict(flat=False)
    settings = retrain_settings(query)  # before reading the body: a bad query costs nothing
    limits = server().settings
    table = parse_csv(
        request.get_data(cache=False),
        query.get(CSV_TARGET_PARAMETER, [None])[0],
        limits.max_train_rows,
        limits.max_inputs,
    )
    return settings.model_copy(
        update={
            "inputs": table.inputs,
            "targets": table.targets,
            "feature_names": table.feature_names,
        }
    )


@bp.post("/rollback")
def rollback() -> Response:
    return json_response(server().rollback(parse_json(RollbackRequest)))
