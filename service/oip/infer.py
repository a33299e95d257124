"""A V2 inference without HTTP: body to request and matrix, matrix to answer, error to message.

The Flask view (routes.py), the binary lane (lane.py) and the gRPC service (rpc/) all
translate around these, so a request answers the same whichever serves it. No Flask here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, BinaryIO

from werkzeug.exceptions import HTTPException

from ..errors import NotFound as ModelNotFound
from ..errors import ServiceError
from ..http import jsonbody
from ..http.web import json_bytes, validate
from ..serving import ModelServer
from .codec import (
    BINARY_CONTENT_TYPE,
    HEADER_LENGTH,
    Float64Matrix,
    bad,
    binary_output,
    binary_response,
    inference_response,
    json_request,
    output_datatype,
    read_header,
    split_body,
    to_matrix,
)
from .schemas import MODEL_NAME, InferenceRequest

JSON_CONTENT_TYPE = "application/json"
PREFIX = "/v2"
INFER_RULE = "/models/<model_name>/infer"  # under PREFIX; the endpoint label of its metrics
# A binary body may say it is binary, JSON (its start), or, as tritonclient sends it, nothing.
BINARY_BODY_TYPES = frozenset({BINARY_CONTENT_TYPE, JSON_CONTENT_TYPE, ""})
INTERNAL_ERROR = "internal error; see the server log"  # all an unexpected failure tells
_VERSION = re.compile(r"^[1-9][0-9]{0,17}$")


@dataclass(frozen=True)
class Answer:
    """A response body, its content type and any header beyond those two."""

    body: bytes
    content_type: str = JSON_CONTENT_TYPE
    headers: tuple[tuple[str, str], ...] = ()


def version_of(model_name: str, model_version: str | None) -> int | None:
    """The version a URL or a gRPC call names (None: the serving one); 404 for another model."""
    if model_name != MODEL_NAME:
        raise ModelNotFound(
            f"unknown model {_shown(model_name)}: this server serves {MODEL_NAME!r}"
        )
    if model_version is None:
        return None
    if not _VERSION.match(model_version):
        raise ModelNotFound(f"model {MODEL_NAME!r} has no version {_shown(model_version)}")
    return int(model_version)


def read_exactly(stream: BinaryIO, length: int) -> bytes:
    """``length`` bytes of the request body in one read; a 400 if the body ends before."""
    body = stream.read(length)
    if len(body) != length:
        raise bad(f"the body ended after {len(body)} of its {length} bytes")
    return body


def binary_request(
    body: bytes, header_length: str, max_rows: int
) -> tuple[InferenceRequest, Float64Matrix]:
    """A body of the binary extension (JSON header, then tensor bytes) as request and matrix."""
    header, binary = split_body(body, header_length)
    if len(header) <= _KNOWN_HEADER_BYTES:
        request = _known_header(header)
    else:
        request = _header_request(header)
    return request, to_matrix(request, max_rows, binary)


def json_infer_request(body: bytes, max_rows: int) -> tuple[InferenceRequest, Float64Matrix]:
    """A JSON body (no binary data) as request and matrix.

    A flat FP64 or FP32 data list is read without a Python number per value (codec's
    json_request); any other body, and every error, by the main API's reader (and so its
    checks, e.g. duplicate keys) and pydantic.
    """
    fast = json_request(body, max_rows)
    if fast is not None:
        return fast
    payload = validate(InferenceRequest, jsonbody.decode(body).payload)
    return payload, to_matrix(payload, max_rows)


def _header_request(header: bytes) -> InferenceRequest:
    return validate(InferenceRequest, read_header(header))


# A client sends the same JSON header with every batch of one shape (tritonclient does): read
# and validated once, 8 us less per request (timeit, in process). The request is frozen; a
# header that fails is not kept (lru_cache keeps no exceptions), so each failure is found afresh.
_KNOWN_HEADER_BYTES = 1024
_known_header = lru_cache(maxsize=64)(_header_request)


def answer(
    server: ModelServer, request: InferenceRequest, inputs: Float64Matrix, version: int | None
) -> Answer:
    """Infer on ``inputs`` and encode the output as the request asks: JSON or binary.

    ``version``: the one the URL names (None: the serving one).
    """
    if request.model_name is not None and request.model_name != MODEL_NAME:
        raise bad(
            f"model_name {_shown(request.model_name)} in the body does not agree with the URL's "
            f"model {MODEL_NAME!r}"
        )
    datatype = output_datatype(request.outputs)
    as_binary = binary_output(request)
    probabilities, record = server.infer(inputs, version)
    # Checked against the version that answered: without one in the URL, the serving version
    # is only known (race-free, a retrain may swap it) once it has answered.
    if request.model_version is not None and request.model_version != str(record.version):
        named = "the serving version" if version is None else "version"
        raise bad(
            f"model_version {_shown(request.model_version)} in the body does not agree with "
            f"the URL, which names {named} {str(record.version)!r}"
        )
    if not as_binary:
        return Answer(
            json_bytes(inference_response(request, probabilities, record.version, datatype))
        )
    data, header_length = binary_response(request, probabilities, record.version, datatype)
    return Answer(data, BINARY_CONTENT_TYPE, ((HEADER_LENGTH, str(header_length)),))


def _shown(value: str, limit: int = 64) -> str:
    """``value`` quoted, cut to ``limit`` characters: an error echoes the start of a long value."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}..."


def error_answer(error: ServiceError) -> tuple[int, Answer]:
    """The protocol's {"error": "..."} for ``error``, and its status."""
    return error_status(error), error_reply(error_message(error), error.headers.items())


def http_error_answer(exc: HTTPException, message: str | None = None) -> tuple[int, Answer]:
    """The protocol's error for a werkzeug HTTPException (its Allow header kept), and its status."""
    allow = dict(exc.get_headers()).get("Allow")
    headers = (("Allow", allow),) if allow else ()
    return exc.code or 500, error_reply(message or exc.description or exc.name, headers)


def error_status(error: ServiceError) -> int:
    """The HTTP status of ``error`` in the protocol: 400 for a bad request (the main API's 422)."""
    return 400 if error.status == 422 else error.status


def error_message(error: ServiceError) -> str:
    """The one string the protocol's error carries: the message, then any details."""
    details = "; ".join(_detail(d) for d in error.details)
    return f"{error.message}: {details}" if details else error.message


def error_reply(message: str, headers: Iterable[tuple[str, str]] = ()) -> Answer:
    """The protocol's error body: {"error": "..."}."""
    return Answer(json_bytes({"error": message}), headers=tuple(headers))


def _detail(detail: dict[str, Any]) -> str:
    loc = ".".join(str(part) for part in detail.get("loc", ()))
    return f"{loc}: {detail['msg']}" if loc else str(detail["msg"])
