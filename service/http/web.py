"""HTTP plumbing shared by the blueprints: JSON in, JSON out, one error envelope, hooks."""

from __future__ import annotations

import io
import logging
import random
import re
import time
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar, cast

import orjson
from flask import Flask, Response, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import get_input_stream

from .. import errors, logs, metrics, schemas
from . import arraybody, jsonbody

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("neuron.http")
access_log = logs.InfoLines(logging.getLogger("neuron.access"))

Model = TypeVar("Model", bound=BaseModel)
RequestT = TypeVar("RequestT", bound=schemas.Request)

# Where a handler outside Flask (oip.lane) files the route template its request is labelled by.
ENDPOINT_KEY = "neuron.endpoint"
_JSON_TYPES = frozenset({"application/json"})
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


def json_bytes(body: BaseModel | dict[str, Any]) -> bytes:
    """Serialise with orjson; a model is dumped shallowly so numpy arrays pass through as is."""
    # A response model's __dict__ is exactly its fields; dict(model) costs 6 us more per call.
    payload = body.__dict__ if isinstance(body, BaseModel) else body
    return orjson.dumps(payload, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)


def json_response(body: BaseModel | dict[str, Any], status: int = 200) -> Response:
    return Response(json_bytes(body), status=status, content_type="application/json")


def parse_json(model: type[Model], context: dict[str, Any] | None = None) -> Model:
    """The request body as ``model``: 415 unless JSON, 400 if unparseable, 422 if invalid.

    A body of number arrays only is read by arraybody (from_array_body); any other
    body, and every error, by jsonbody and pydantic.
    """
    return parse_body(model, request_json_body(), context)


def request_json_body(assume_json: bool = False) -> bytes:
    """The request's body, read whole; 415 unless its Content-Type says it is JSON.

    ``assume_json``: as read_json's.
    """
    return _json_bytes(request.get_data(cache=False), assume_json)


def wsgi_body(environ: WSGIEnvironment, max_body: int) -> bytes:
    """The body as request.get_data() reads it, without a request: werkzeug's stream and checks.

    For the lanes outside Flask (http/lane.py, oip/lane.py): ClientDisconnected (400) if the
    body ends before its Content-Length, RequestEntityTooLarge past ``max_body``.
    """
    stream, declared = environ["wsgi.input"], environ.get("CONTENT_LENGTH", "")
    if (
        type(stream) is io.BytesIO
        and "wsgi.input_terminated" in environ
        and declared.isdigit()
        and int(declared) <= max_body
    ):
        # A body the server framed and holds whole (the loop worker's inline requests): what
        # werkzeug's wrapper would read, without it (a fifth of the lane's time for one row).
        return stream.read()
    return get_input_stream(environ, max_content_length=max_body).read()


def parse_body(model: type[Model], body: bytes, context: dict[str, Any] | None = None) -> Model:
    """``body`` (JSON bytes) as ``model``: parse_json without Flask (http/lane.py reads its own)."""
    if issubclass(model, schemas.Request):
        fast = from_array_body(model, body, (context or {}).get("max_rows"))
        if fast is not None:
            return fast
    return parse_general(model, body, context)


def parse_general(model: type[Model], body: bytes, context: dict[str, Any] | None = None) -> Model:
    """``body`` through jsonbody and pydantic: what any body may hold, and every error."""
    decoded = jsonbody.decode(body)
    return _validate(model, decoded.payload, decoded.numbers_only, context)


def from_array_body(model: type[RequestT], body: bytes, max_rows: int | None) -> RequestT | None:
    """``model`` read from a numbers-only body, as model_validate would build it; else None."""
    arrays = array_fields(model, body, max_rows)
    return None if arrays is None else cast(RequestT, model.model_construct(None, **arrays))


def array_fields(
    model: type[schemas.Request], body: bytes, max_rows: int | None
) -> dict[str, Any] | None:
    """The fields of ``model`` from a numbers-only body, as model_validate makes them; else None.

    None means "read it the general way" (parse_general), which also answers every error: this
    takes only what the schemas' validators accept (rows within max_rows, targets in [0, 1],
    one per row).
    """
    fields = schemas.ARRAY_FIELDS.get(model)
    arrays = None if fields is None else arraybody.read(body, fields)
    if arrays is None:
        return None
    inputs = arrays["inputs"]
    if max_rows is not None and len(inputs) > max_rows:
        return None
    targets = arrays.get("targets")
    if targets is not None:
        if len(targets) != len(inputs) or ((targets < 0) | (targets > 1)).any():
            return None
        arrays["targets"] = targets.reshape(-1, 1)
    return cast(dict[str, Any], arrays)


def read_json(optional: bool = False, assume_json: bool = False) -> Any:
    """Decoded JSON body; None when ``optional`` and the body is empty.

    ``assume_json`` reads a body that names no Content-Type as JSON (one naming another is 415).
    With ``optional``, None means "no body": a body of JSON null is refused (422), not taken
    for none.
    """
    body = request.get_data(cache=False)
    if optional and not body:
        return None
    payload = jsonbody.decode(_json_bytes(body, assume_json)).payload
    if optional and payload is None:
        raise _not_an_object()
    return payload


def _json_bytes(body: bytes, assume_json: bool) -> bytes:
    """``body`` if the request says (or, with ``assume_json``, does not deny) it is JSON."""
    if request.mimetype not in _JSON_TYPES and not (assume_json and not request.mimetype):
        raise errors.UnsupportedMediaType("send the body as Content-Type: application/json")
    return body


def validate(model: type[Model], payload: Any, context: dict[str, Any] | None = None) -> Model:
    """``payload`` as ``model``; 422 unless it is a JSON object that the model accepts."""
    return _validate(model, payload, False, context)


def _validate(
    model: type[Model], payload: Any, numbers_only: bool, context: dict[str, Any] | None
) -> Model:
    if not isinstance(payload, dict):
        raise _not_an_object()
    ctx = {"numbers_only": numbers_only, **(context or {})}
    try:
        return model.model_validate(payload, context=ctx)
    except ValidationError as exc:
        raise errors.ValidationFailed(
            "the request is invalid", schemas.validation_details(exc)
        ) from None


def _not_an_object() -> errors.ValidationFailed:
    return errors.ValidationFailed(
        "the body must be a JSON object", [{"loc": [], "msg": "expected an object"}]
    )


def render_error(error: errors.ServiceError) -> Response:
    response = json_response(error.envelope(), error.status)
    response.headers.update(error.headers)
    return response


def render_http_exception(exc: HTTPException) -> Response:
    """A werkzeug HTTPException (routing, body limits, a client gone) in our envelope."""
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
    return render_unexpected(request.method, request.path)


def render_unexpected(method: str, path: str) -> Response:
    """The 500 of an unexpected exception; logs it, so call it while handling the exception."""
    log.exception("unhandled error on %s %s", method, path)
    return render_error(errors.ServiceError("internal error; see the server log"))


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(errors.ServiceError, render_error)
    app.register_error_handler(HTTPException, render_http_exception)
    app.register_error_handler(Exception, _on_unexpected)


def make_request_id(supplied: str) -> str:
    """The client's X-Request-ID if well formed, else a new one."""
    # 32 hex digits like uuid4().hex, without a UUID object or a getrandom(2) per request.
    # Unique, not secret; the random module reseeds itself in each forked worker.
    return supplied if _REQUEST_ID.match(supplied) else f"{random.getrandbits(128):032x}"


class _Observed:
    """Flask's WSGI app wrapped once: request id, security headers, metrics and access log.

    As Flask before/after hooks these read ``request``, ``g`` and ``current_app`` through
    werkzeug's context-local proxies field by field (~25 lookups per request, bench/README.md);
    here each request's values come from its WSGI environ and the request object werkzeug
    files there, and the metrics switch is read once, when the app is built.
    """

    def __init__(self, app: WSGIApplication, metrics_enabled: bool) -> None:
        self._app = app
        self._metrics = metrics_enabled

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = make_request_id(environ.get("HTTP_X_REQUEST_ID", ""))

        def observed(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            # Neither header is set anywhere else in the app (a test checks there is one of each).
            headers.append(("X-Request-ID", request_id))
            headers.append(("X-Content-Type-Options", "nosniff"))
            self._observe(environ, int(status[:3]), request_id, time.perf_counter() - started)
            return start_response(status, headers, exc_info)

        if not self._metrics:
            return self._app(environ, observed)
        metrics.REQUESTS_IN_FLIGHT.inc()
        try:
            return self._app(environ, observed)
        finally:
            metrics.REQUESTS_IN_FLIGHT.dec()

    def _observe(
        self, environ: WSGIEnvironment, status: int, request_id: str, elapsed: float
    ) -> None:
        # A request served outside Flask (oip.lane) files its endpoint; Flask files its request
        # until the context pops (werkzeug's test client files one of its own: hence the order).
        endpoint = environ.get(ENDPOINT_KEY)
        flask_request = None if endpoint else environ.get("werkzeug.request")
        if flask_request is not None:
            method, path = flask_request.method, flask_request.path
            rule = flask_request.url_rule
            endpoint = rule.rule if rule is not None else "unmatched"
        else:  # outside Flask, or Flask failed first: what werkzeug would have read
            method = environ.get("REQUEST_METHOD", "GET").upper()
            path = "/" + environ.get("PATH_INFO", "").lstrip("/")
            endpoint = endpoint or "unmatched"
        if self._metrics:
            _duration(endpoint, method, status).observe(elapsed)
        log_request(request_id, method, path, endpoint, status, elapsed)


def log_request(
    request_id: str, method: str, path: str, endpoint: str, status: int, elapsed: float
) -> None:
    """The access-log line of one request (or gRPC call)."""
    access_log.info(
        "request",
        {
            "request_id": request_id,
            "method": method,
            "path": path,
            "endpoint": endpoint,
            "status": status,
            "duration_ms": round(elapsed * 1000, 3),
        },
    )


def keep_endpoint(environ: WSGIEnvironment) -> None:
    """File the route Flask matched in ``environ``, for a response started after Flask returns.

    Flask's request leaves the environ when its context pops; a wrapper that holds the answer
    (http/encoding.py, to compress it) starts the response after that, and the access log and
    metrics would then call the request unmatched.
    """
    flask_request = environ.get("werkzeug.request")
    if flask_request is not None and ENDPOINT_KEY not in environ:
        rule = flask_request.url_rule
        environ[ENDPOINT_KEY] = rule.rule if rule is not None else "unmatched"


@lru_cache(maxsize=512)
def _duration(endpoint: str, method: str, status: int) -> Any:
    """The labelled histogram child, looked up once per label set rather than per request."""
    return metrics.REQUEST_DURATION_SECONDS.labels(endpoint, method, str(status))


def install_hooks(app: Flask) -> None:
    """Request id, security headers, access log and request metrics, observed in one place."""
    app.wsgi_app = _Observed(app.wsgi_app, bool(app.config["NEURON_METRICS"]))  # type: ignore[method-assign]
