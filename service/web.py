"""HTTP plumbing shared by the blueprints: JSON in, JSON out, one error envelope, hooks."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from functools import lru_cache
from typing import Any, TypeVar

import orjson
from flask import Flask, Response, current_app, g, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from . import errors, metrics

log = logging.getLogger("neuron.http")
access_log = logging.getLogger("neuron.access")

Model = TypeVar("Model", bound=BaseModel)

_JSON_TYPES = frozenset({"application/json"})
_MAX_WALK_DEPTH = 16  # request bodies are shallow; deeper ones take the exact check
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_HTTP_ERRORS: dict[int, type[errors.ServiceError]] = {
    400: errors.MalformedRequest,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
}


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot serialise {type(value).__name__}")


def json_response(body: BaseModel | dict[str, Any], status: int = 200) -> Response:
    """Serialise with orjson; a model is dumped shallowly so numpy arrays pass through as is."""
    # A response model's __dict__ is exactly its fields; dict(model) costs 6 us more per call.
    payload = body.__dict__ if isinstance(body, BaseModel) else body
    data = orjson.dumps(payload, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(data, status=status, content_type="application/json")


def parse_json(model: type[Model], context: dict[str, Any] | None = None) -> Model:
    """The request body as ``model``: 415 unless JSON, 400 if unparseable, 422 if invalid."""
    payload = read_json()
    return validate(model, {} if payload is None else payload, context)


def read_json(optional: bool = False, assume_json: bool = False) -> Any:
    """Decoded JSON body; None when ``optional`` and the body is empty.

    ``assume_json`` reads a body that names no Content-Type as JSON (one naming another is 415).
    """
    body = request.get_data(cache=False)
    if optional and not body:
        return None
    if request.mimetype not in _JSON_TYPES and not (assume_json and not request.mimetype):
        raise errors.UnsupportedMediaType("send the body as Content-Type: application/json")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.MalformedRequest(f"the body is not valid JSON: {exc}") from None
    quotes = body.count(b'"')
    keys, strings = _quotes(payload)
    if quotes != keys + strings:
        _refuse_duplicate_keys(body)
    # numpy reads True and "1" as 1.0: the matrix check looks at each value unless the body
    # holds neither (every quote mark belongs to a key).
    g.may_hold_non_numbers = b"true" in body or b"false" in body or quotes != keys
    return payload


def _quotes(value: Any, depth: int = 0) -> tuple[int, int]:
    """Quote marks the parsed (keys, string values) account for; never more than the body holds.

    orjson keeps the last of duplicate keys silently; a dropped key leaves its quotes in the
    body but not in the payload, so equal counts prove there was none. Rows of numbers and
    deep nesting are not walked: that can only undercount, which sends the body to the exact
    check below.
    """
    if isinstance(value, str):
        return 0, 2
    keys = strings = 0
    if depth > _MAX_WALK_DEPTH:
        return keys, strings
    if isinstance(value, dict):
        keys = 2 * len(value)
        items: Any = value.values()
    elif isinstance(value, list) and value and not _numbers(value):
        items = value
    else:
        return keys, strings
    for item in items:
        more_keys, more_strings = _quotes(item, depth + 1)
        keys += more_keys
        strings += more_strings
    return keys, strings


def _numbers(items: list[Any]) -> bool:
    first = items[0]
    if isinstance(first, list) and first:
        first = first[0]
    return isinstance(first, int | float)


def _refuse_duplicate_keys(body: bytes) -> None:
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            duplicate = next(key for key in keys if keys.count(key) > 1)
            raise errors.MalformedRequest(f"the body repeats the key {duplicate!r}")
        return dict(pairs)

    try:
        json.loads(body, object_pairs_hook=unique)
    except RecursionError:
        raise errors.MalformedRequest("the body is nested too deeply") from None


def validate(model: type[Model], payload: Any, context: dict[str, Any] | None = None) -> Model:
    if not isinstance(payload, dict):
        raise errors.ValidationFailed(
            "the body must be a JSON object", [{"loc": [], "msg": "expected an object"}]
        )
    ctx = {"may_hold_non_numbers": g.get("may_hold_non_numbers", True), **(context or {})}
    try:
        return model.model_validate(payload, context=ctx)
    except ValidationError as exc:
        raise errors.ValidationFailed("the request is invalid", _details(exc)) from None


def _details(exc: ValidationError) -> list[errors.Detail]:
    return [
        {"loc": list(item["loc"]), "msg": item["msg"].removeprefix("Value error, ")}
        for item in exc.errors(include_url=False, include_input=False)
    ]


def render_error(error: errors.ServiceError) -> Response:
    response = json_response(error.envelope(), error.status)
    response.headers.update(error.headers)
    return response


def _on_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    kind = _HTTP_ERRORS.get(status, errors.ServiceError)
    error = kind(exc.description or exc.name)
    if kind is errors.ServiceError:
        error.status, error.code = status, re.sub(r"\W+", "_", exc.name.lower())
    response = render_error(error)
    allow = dict(exc.get_headers()).get("Allow")
    if allow:
        response.headers["Allow"] = allow
    return response


def _on_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return render_error(errors.ServiceError("internal error; see the server log"))


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(errors.ServiceError, render_error)
    app.register_error_handler(HTTPException, _on_http_exception)
    app.register_error_handler(Exception, _on_unexpected)


def _before() -> None:
    g.started = time.perf_counter()
    supplied = request.headers.get("X-Request-ID", "")
    # 32 hex digits like uuid4().hex, without building a UUID object on every request.
    g.request_id = supplied if _REQUEST_ID.match(supplied) else os.urandom(16).hex()
    if current_app.config["NEURON_METRICS"]:
        metrics.REQUESTS_IN_FLIGHT.inc()


def _after(response: Response) -> Response:
    elapsed = time.perf_counter() - g.started
    rule = request.url_rule
    endpoint = rule.rule if rule is not None else "unmatched"
    if current_app.config["NEURON_METRICS"]:
        metrics.REQUESTS_IN_FLIGHT.dec()
        _duration(endpoint, request.method, response.status_code).observe(elapsed)
    headers = response.headers
    headers["X-Request-ID"] = g.request_id
    headers["X-Content-Type-Options"] = "nosniff"
    if access_log.isEnabledFor(logging.INFO):
        access_log.info(
            "request",
            extra={
                "request_id": g.request_id,
                "method": request.method,
                "path": request.path,
                "endpoint": endpoint,
                "status": response.status_code,
                "duration_ms": round(elapsed * 1000, 3),
            },
        )
    return response


@lru_cache(maxsize=512)
def _duration(endpoint: str, method: str, status: int) -> Any:
    """The labelled histogram child, looked up once per label set rather than per request."""
    return metrics.REQUEST_DURATION_SECONDS.labels(endpoint, method, str(status))


def install_hooks(app: Flask) -> None:
    """Request id, security headers, access log and request metrics, observed in one place."""
    app.before_request(_before)
    app.after_request(_after)
