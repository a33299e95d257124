"""The infer lanes: V2 infers as clients send them by default, served as plain WSGI beside Flask.

Under gunicorn, Flask's request context, routing and response object cost a 10,000-row
binary infer about 0.2 ms of its 0.6 over the bare WSGI floor (a one-off prototype beside the
floor, bench/README.md), more than the forward pass and the tensor checks together; a
single-row infer pays them more than all its own work. BinaryLane takes only the shape of
request that tritonclient sends by default: POST to the serving model's infer URL with an
Inference-Header-Content-Length, a Content-Length within the limit and a Content-Type the view
accepts as it is written. JsonInferLane takes a JSON infer to the same URL, without that header,
with a Content-Type of application/json or none (as KServe's SDK and tritonclient send it),
a Content-Length within the limit and neither Transfer-Encoding nor Content-Encoding. Both
answer with the same functions as the view (infer.py); every other request, including every
variant of those headers, goes to Flask unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from ..errors import ServiceError
from ..http.lane import Lane
from ..http.web import ENDPOINT_KEY, wsgi_body
from .infer import (
    BINARY_BODY_TYPES,
    INFER_RULE,
    INTERNAL_ERROR,
    JSON_CONTENT_TYPE,
    PREFIX,
    Answer,
    answer,
    binary_request,
    error_answer,
    error_reply,
    http_error_answer,
    json_infer_request,
    read_exactly,
)
from .schemas import MODEL_NAME

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("neuron.oip")

PATH = PREFIX + INFER_RULE.replace("<model_name>", MODEL_NAME)
ENDPOINT = PREFIX + INFER_RULE  # the view's rule: one metrics label whichever serves it
_HEADER_LENGTH_KEY = "HTTP_INFERENCE_HEADER_CONTENT_LENGTH"
_JSON_BODY_TYPES = frozenset({JSON_CONTENT_TYPE, ""})  # "": no Content-Type, or an empty one


class BinaryLane(Lane):
    """WSGI middleware: the binary infer requests described above, else the wrapped app."""

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        length = self._takes(environ)
        if length is None:
            return self.app(environ, start_response)
        environ[ENDPOINT_KEY] = ENDPOINT
        try:
            request, inputs = binary_request(
                read_exactly(environ["wsgi.input"], length),
                environ[_HEADER_LENGTH_KEY],
                self.server.settings.max_batch,
            )
            status, reply = 200, answer(self.server, request, inputs, None)
        except ServiceError as error:
            status, reply = error_answer(error)
        except Exception:
            log.exception("unhandled error on POST %s", PATH)
            status, reply = 500, error_reply(INTERNAL_ERROR)
        return _send(status, reply, start_response)

    def _takes(self, environ: WSGIEnvironment) -> int | None:
        """The body's length if the lane serves this request, else None."""
        if (
            not self.enabled
            or environ.get("PATH_INFO") != PATH
            or environ.get("REQUEST_METHOD") != "POST"
            or _HEADER_LENGTH_KEY not in environ
            or environ.get("CONTENT_TYPE", "") not in BINARY_BODY_TYPES
            or "HTTP_TRANSFER_ENCODING" in environ
        ):
            return None
        return _length(environ, self._max_body)


class JsonInferLane(Lane):
    """WSGI middleware: the JSON infer requests described above, else the wrapped app."""

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not self._takes(environ):
            return self.app(environ, start_response)
        environ[ENDPOINT_KEY] = ENDPOINT
        try:
            body = wsgi_body(environ, self._max_body)  # as the view's request.get_data()
            request, inputs = json_infer_request(body, self.server.settings.max_batch)
            status, reply = 200, answer(self.server, request, inputs, None)
        except ServiceError as error:
            status, reply = error_answer(error)
        except HTTPException as exc:  # werkzeug's stream: the client went before its body did
            status, reply = http_error_answer(exc)
        except Exception:
            log.exception("unhandled error on POST %s", PATH)
            status, reply = 500, error_reply(INTERNAL_ERROR)
        return _send(status, reply, start_response)

    def _takes(self, environ: WSGIEnvironment) -> bool:
        """Whether the lane serves this request."""
        if (
            not self.enabled
            or environ.get("PATH_INFO") != PATH
            or environ.get("REQUEST_METHOD") != "POST"
            or _HEADER_LENGTH_KEY in environ
            or environ.get("CONTENT_TYPE", "") not in _JSON_BODY_TYPES
            or "HTTP_TRANSFER_ENCODING" in environ
            or "HTTP_CONTENT_ENCODING" in environ
        ):
            return False
        return _length(environ, self._max_body) is not None


def _length(environ: WSGIEnvironment, max_body: int) -> int | None:
    """The Content-Length if it is written as digits and within ``max_body``, else None."""
    declared = environ.get("CONTENT_LENGTH", "")
    if not (declared.isascii() and declared.isdigit()):
        return None
    length = int(declared)
    return length if length <= max_body else None


def _send(status: int, reply: Answer, start_response: StartResponse) -> list[bytes]:
    headers = [
        ("Content-Type", reply.content_type),
        ("Content-Length", str(len(reply.body))),
        *reply.headers,
    ]
    start_response(f"{status} {HTTP_STATUS_CODES[status].upper()}", headers)
    return [reply.body]
