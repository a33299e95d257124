"""The predict lane: POST /predict with a JSON body served as plain WSGI, beside Flask.

Flask's request context, routing, request and response objects cost a single-row /predict
more than everything else it does (in process, bench/README.md): the validation, the model,
the metrics and the access line together cost less. The lane takes only the shape of request
a JSON client sends by default: POST /predict with a Content-Type of exactly
``application/json``, a Content-Length within the body limit, and neither Transfer-Encoding
nor Content-Encoding (BodyEncoding, around the lane, has decoded a compressed body by then).
It answers with the view's own functions: the body read as werkzeug's stream reads it
(web.wsgi_body), api.predicted (arraybody, or jsonbody and pydantic; ModelServer.predict),
json_bytes, and for every error the very response Flask's error handlers build. Every other
request, including every variant of those headers, goes to Flask unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from werkzeug.exceptions import HTTPException

from ..errors import ServiceError
from ..serving import ModelServer
from .api import PREDICT_RULE, predicted
from .web import (
    ENDPOINT_KEY,
    json_bytes,
    render_error,
    render_http_exception,
    render_unexpected,
    wsgi_body,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

JSON_CONTENT_TYPE = "application/json"  # as the view's Response writes it, and the only one taken
_OK = "200 OK"  # werkzeug's status line for 200


class Lane:
    """What every lane (this one, oip/lane.py's) holds: the app it passes the rest to."""

    def __init__(self, app: WSGIApplication, server: ModelServer) -> None:
        self.app = app
        self.server = server
        self._max_body = server.settings.max_body_bytes  # Flask's MAX_CONTENT_LENGTH too
        self.enabled = True  # tests compare its answers with the view's by switching it off


class PredictLane(Lane):
    """WSGI middleware: the /predict requests described above, else the wrapped app."""

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not self._takes(environ):
            return self.app(environ, start_response)
        environ[ENDPOINT_KEY] = PREDICT_RULE
        # The handlers' order is Flask's: ServiceError, then HTTPException, then any other.
        try:
            body = json_bytes(predicted(self.server, wsgi_body(environ, self._max_body)))
        except ServiceError as error:
            return render_error(error)(environ, start_response)
        except HTTPException as exc:  # werkzeug's stream: the client went before its body did
            return render_http_exception(exc)(environ, start_response)
        except Exception:
            return render_unexpected("POST", PREDICT_RULE)(environ, start_response)
        start_response(
            _OK, [("Content-Type", JSON_CONTENT_TYPE), ("Content-Length", str(len(body)))]
        )
        return [body]

    def _takes(self, environ: WSGIEnvironment) -> bool:
        """Whether the lane serves this request."""
        if (
            not self.enabled
            or environ.get("PATH_INFO") != PREDICT_RULE
            or environ.get("REQUEST_METHOD") != "POST"
            or environ.get("CONTENT_TYPE") != JSON_CONTENT_TYPE
            or "HTTP_TRANSFER_ENCODING" in environ
            or "HTTP_CONTENT_ENCODING" in environ
        ):
            return False
        declared = environ.get("CONTENT_LENGTH", "")
        return declared.isascii() and declared.isdigit() and int(declared) <= self._max_body
