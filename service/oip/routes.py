"""Blueprint: the Open Inference Protocol (KServe V2 REST) beside the simple API.

A thin adapter on the same core as /predict (ModelServer.infer). Its errors take the
protocol's own form, {"error": "..."}, with 400 for a bad request and 404 for an unknown
model or version; the main envelope stays everywhere else.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from .. import __version__
from ..errors import ServiceError, UnsupportedMediaType
from ..http.api import server
from ..http.web import json_response, request_json_body
from .codec import BINARY_CONTENT_TYPE, HEADER_LENGTH, Float64Matrix, bad
from .infer import (
    BINARY_BODY_TYPES,
    INFER_RULE,
    INTERNAL_ERROR,
    PREFIX,
    Answer,
    answer,
    binary_request,
    error_answer,
    error_reply,
    http_error_answer,
    json_infer_request,
    read_exactly,
    version_of,
)
from .schemas import (
    EXTENSIONS,
    MODEL_NAME,
    SERVER_NAME,
    InferenceRequest,
    ModelReady,
    Parameters,
    ServerLive,
    ServerMetadata,
    ServerReady,
    model_metadata,
)

log = logging.getLogger("neuron.oip")

bp = Blueprint("oip", __name__, url_prefix=PREFIX)


# -- errors: the protocol's {"error": "..."} ---------------------------------------------------


@bp.errorhandler(ServiceError)
def _service_error(error: ServiceError) -> Response:
    return _sent(*error_answer(error))


def _sent(status: int, reply: Answer) -> Response:
    response = Response(reply.body, status=status, content_type=reply.content_type)
    response.headers.update(reply.headers)
    return response


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException, message: str | None = None) -> Response:
    return _sent(*http_error_answer(exc, message))


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return _sent(500, error_reply(INTERNAL_ERROR))


class _RoutingError(HTTPException):
    """A 404/405 of routing under /v2, which no blueprint handler would otherwise see.

    Its class has no code, so Flask files its handler under this class alone; the instance
    carries the original's code, as Flask wants of any HTTPException it handles.
    """

    def __init__(self, original: HTTPException) -> None:
        super().__init__(original.description)
        self.code = original.code
        self.original = original


@bp.before_app_request
def _claim_routing_errors() -> None:
    """Flask raises routing errors outside any blueprint: mark the /v2 ones as ours."""
    exc = request.routing_exception
    if isinstance(exc, NotFound | MethodNotAllowed) and (
        request.path == PREFIX or request.path.startswith(f"{PREFIX}/")
    ):
        request.routing_exception = _RoutingError(exc)


@bp.app_errorhandler(_RoutingError)
def _routing_error(exc: _RoutingError) -> Response:
    if isinstance(exc.original, MethodNotAllowed):
        message = f"{request.method} is not allowed on {request.path}"
    else:
        message = f"no such endpoint: {request.path}"
    return _http_error(exc.original, message)


# -- URL and body ------------------------------------------------------------------------------


def _binary_body(header_length: str) -> tuple[InferenceRequest, Float64Matrix]:
    """A body of the binary extension, as request and matrix."""
    if request.mimetype not in BINARY_BODY_TYPES:
        raise UnsupportedMediaType(f"send a binary body as Content-Type: {BINARY_CONTENT_TYPE}")
    return binary_request(_read_body(), header_length, server().settings.max_batch)


def _json_body() -> tuple[InferenceRequest, Float64Matrix]:
    """A JSON body, read by infer.json_infer_request (as lane.JsonInferLane reads it)."""
    if request.mimetype == BINARY_CONTENT_TYPE:
        raise bad(f"a binary body needs the {HEADER_LENGTH} header: the length of its JSON")
    # The protocol's clients (tritonclient among them) send their JSON without saying so.
    body = request_json_body(assume_json=True)  # 415 for another Content-Type
    return json_infer_request(body, server().settings.max_batch)


def _read_body() -> bytes:
    """The body in one read of the server's own input, as the bare WSGI floor reads it.

    request.stream would wrap that read and copy its result into a zeroed buffer: for a
    240 kB tensor under gunicorn, 85-97 us per request against the floor's 35 (in-worker
    timing). Its checks are the two below.
    """
    length = request.content_length
    if length is None:
        return request.get_data(cache=False)  # chunked: werkzeug's loop, bounded all the same
    limit = request.max_content_length
    if limit is not None and length > limit:
        raise RequestEntityTooLarge()
    return read_exactly(request.environ["wsgi.input"], length)


# -- endpoints ---------------------------------------------------------------------------------


@bp.get("", strict_slashes=False)
def server_metadata() -> Response:
    return json_response(
        ServerMetadata(name=SERVER_NAME, version=__version__, extensions=list(EXTENSIONS))
    )


@bp.get("/health/live")
def server_live() -> Response:
    return json_response(ServerLive(live=True))


@bp.get("/health/ready")
def server_ready() -> Response:
    """200 once a model is loaded; 503 (and a retry of start-up) before."""
    server().ready()
    return json_response(ServerReady(ready=True))


@bp.get("/models/<model_name>")
@bp.get("/models/<model_name>/versions/<model_version>")
def model_metadata_endpoint(model_name: str, model_version: str | None = None) -> Response:
    document = server().record(version_of(model_name, model_version)).document
    parameters: Parameters = {} if document.bias is None else {"bias": document.bias}
    if document.hidden is not None:
        parameters |= {
            "hidden_units": document.hidden.units,
            "hidden_activation": document.hidden.activation,
        }
    metadata = model_metadata(document.n_inputs, server().store.versions(), parameters)
    return json_response(metadata.model_dump(exclude_none=True))


@bp.get("/models/<model_name>/ready")
@bp.get("/models/<model_name>/versions/<model_version>/ready")
def model_ready(model_name: str, model_version: str | None = None) -> Response:
    version = version_of(model_name, model_version)
    if version is None:
        server().ready()
    else:
        server().record(version)
    return json_response(ModelReady(name=MODEL_NAME, ready=True))


@bp.post(INFER_RULE)
@bp.post("/models/<model_name>/versions/<model_version>/infer")
def infer(model_name: str, model_version: str | None = None) -> Response:
    version = version_of(model_name, model_version)
    header_length = request.headers.get(HEADER_LENGTH)
    if header_length is not None:
        payload, inputs = _binary_body(header_length)
    else:
        payload, inputs = _json_body()
    return _sent(200, answer(server(), payload, inputs, version))
