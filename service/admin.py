"""Blueprint: authenticated administration — retrain and rollback."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, request

from .api import server
from .errors import AdminDisabled, Unauthorized
from .schemas import RetrainRequest, RollbackRequest
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
    """No body retrains on the classic set with the defaults; any other body must be an object."""
    payload = read_json(optional=True)
    return json_response(
        server().retrain(validate(RetrainRequest, {} if payload is None else payload))
    )


@bp.post("/rollback")
def rollback() -> Response:
    return json_response(server().rollback(parse_json(RollbackRequest)))
