"""The two floors, served by gunicorn with the service's own gunicorn.conf.py.

``bare``: a WSGI callable with no framework — the server's floor.
``flask_app``: a Flask hello-world POST endpoint — the best any Flask app on this server can do.
Both read the body and answer the same small fixed JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, request

BODY = b'{"predictions":[0.9999],"model_version":1}'
_HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def bare(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    environ["wsgi.input"].read(length)
    start_response("200 OK", _HEADERS)
    return [BODY]


flask_app = Flask("floor")


@flask_app.post("/predict")
def hello() -> Response:
    request.get_data()
    return Response(BODY, mimetype="application/json")
