"""CORS: pages of other origins may call the public API and V2 (and, if asked, the admin API).

A WSGI wrapper around the whole app, the lanes included, so a response gets the same headers
whichever path served it. flask-cors, the usual choice, adds its headers in Flask's
after_request, which the lanes' responses (JSON /predict, binary V2 infers) never pass through.
Installed only when NEURON_CORS_ORIGINS is set: unset, no request pays for it and no response
carries an Access-Control-* header. No Access-Control-Allow-Credentials, ever: the admin token
travels in an Authorization header a page sets itself, and no cookie means anything here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .web import ENDPOINT_KEY

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

PUBLIC = frozenset({"/predict", "/evaluate", "/model", "/v2"})
ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = (
    "Authorization, Content-Encoding, Content-Type, Inference-Header-Content-Length, X-Request-ID"
)
EXPOSE_HEADERS = "Inference-Header-Content-Length, X-Request-ID"
MAX_AGE_SECONDS = "600"
PREFLIGHT_ENDPOINT = "CORS preflight"  # the metrics label of a preflight answered here


class Cors:
    """Answers allowed preflights itself; names an allowed origin on every other response."""

    def __init__(self, app: WSGIApplication, origins: Sequence[str], admin: bool) -> None:
        self.app = app
        self._any = tuple(origins) == ("*",)
        self._origins = frozenset(origins)
        self._admin = admin

    def covers(self, path: str) -> bool:
        return (
            path in PUBLIC
            or path.startswith("/v2/")
            or (self._admin and path.startswith("/admin/"))
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not self.covers(environ.get("PATH_INFO", "")):
            return self.app(environ, start_response)
        origin = environ.get("HTTP_ORIGIN")
        if origin is None or not (self._any or origin in self._origins):
            # A disallowed origin's request is served as it is; the browser keeps the answer
            # from the page. Vary: a cache must not hand this answer to an allowed origin.
            return self.app(environ, _adding(start_response, []))
        allowed = [("Access-Control-Allow-Origin", "*" if self._any else origin)]
        if environ.get("REQUEST_METHOD") == "OPTIONS" and (
            "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ
        ):
            environ[ENDPOINT_KEY] = PREFLIGHT_ENDPOINT
            headers = [
                *allowed,
                ("Access-Control-Allow-Methods", ALLOW_METHODS),
                ("Access-Control-Allow-Headers", ALLOW_HEADERS),
                ("Access-Control-Max-Age", MAX_AGE_SECONDS),
                ("Vary", "Origin"),
                ("Content-Length", "0"),
            ]
            start_response("204 No Content", headers)
            return []
        allowed.append(("Access-Control-Expose-Headers", EXPOSE_HEADERS))
        return self.app(environ, _adding(start_response, allowed))


def _adding(start_response: StartResponse, added: list[tuple[str, str]]) -> StartResponse:
    """start_response with ``added`` headers and Origin in Vary (merged into one there)."""

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        for i, (name, value) in enumerate(headers):
            if name.lower() == "vary":
                headers[i] = (name, f"{value}, Origin")
                break
        else:
            headers.append(("Vary", "Origin"))
        headers.extend(added)
        return start_response(status, headers, exc_info)

    return start
