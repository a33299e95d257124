"""What a browser gets: the API reference at /docs (Swagger UI 5) and the index as a page.

Every byte of the page comes from this service: Swagger UI's files from the pinned
flask-swagger-ui wheel (only its files, not its blueprint, whose page runs an inline script),
the initializer from here. The Content-Security-Policy keeps it so in the browser.
"""

from __future__ import annotations

import hashlib
import mimetypes
from functools import lru_cache
from html import escape
from importlib import resources
from pathlib import Path

from flask import Blueprint, Response, request

from .. import __version__
from ..errors import NotFound
from ..schemas import Index

bp = Blueprint("docs", __name__, url_prefix="/docs")

SWAGGER_UI_DIR = Path(str(resources.files("flask_swagger_ui") / "dist"))
SWAGGER_UI_VERSION = (SWAGGER_UI_DIR / "VERSION").read_text().strip().removeprefix("v")
# The only files served from the package: a name not listed here is a 404.
ASSETS = frozenset(
    {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "favicon-16x16.png"}
)
ASSET_MAX_AGE = 86_400  # seconds; each URL carries the versions, so an upgrade changes it

# No 'unsafe-inline' anywhere: the initializer is a served file, not an inline script, and
# Swagger UI 5 sets element styles through the DOM (CSSOM), which CSP does not block; its
# stylesheet's icons are data: URIs. tests/browser records no violation over the whole page.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
INDEX_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

_CACHE_BUSTER = f"v={SWAGGER_UI_VERSION}-{__version__}"
INITIALIZER = b"""\
// Swagger UI for this service: the document and every asset come from the service itself.
window.addEventListener("load", function () {
  "use strict";
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    validatorUrl: null,
    queryConfigEnabled: false,
    deepLinking: true,
    displayRequestDuration: true,
  });
});
"""
_INITIALIZER_ETAG = hashlib.sha256(INITIALIZER).hexdigest()[:32]
PAGE = f"""\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>neuron-service API</title>
<link rel="icon" type="image/png" href="docs/favicon-32x32.png?{_CACHE_BUSTER}">
<link rel="stylesheet" href="docs/swagger-ui.css?{_CACHE_BUSTER}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js?{_CACHE_BUSTER}"></script>
<script src="docs/init.js?{_CACHE_BUSTER}"></script>
</body>
</html>
"""


@bp.get("")
def page() -> Response:
    response = Response(PAGE, content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = DOCS_CSP
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/init.js")
def initializer() -> Response:
    response = Response(INITIALIZER, content_type="text/javascript; charset=utf-8")
    response.set_etag(_INITIALIZER_ETAG)
    response.cache_control.public = True
    response.cache_control.max_age = ASSET_MAX_AGE
    response.make_conditional(request)  # 304 on a matching If-None-Match; changes it in place
    return response


@bp.get("/<name>")
def asset(name: str) -> Response:
    """One of Swagger UI's files, with caching headers and 304 on a matching ETag."""
    path = SWAGGER_UI_DIR / name
    if name not in ASSETS or not path.is_file():  # a damaged install is a 404, not a 500
        raise NotFound(f"no such asset: /docs/{name}")
    data, etag = _asset_bytes(name)
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = Response(data, content_type=content_type)
    response.set_etag(etag)
    response.cache_control.public = True
    response.cache_control.max_age = ASSET_MAX_AGE
    response.make_conditional(request)
    return response


@lru_cache(maxsize=len(ASSETS))
def _asset_bytes(name: str) -> tuple[bytes, str]:
    """A listed file's bytes and ETag, read once per worker: no file handle outlives a request."""
    data = (SWAGGER_UI_DIR / name).read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:32]


def index_page(index: Index) -> str:
    """The index as a small HTML page of links, for a browser asking for HTML first."""
    model = "none loaded yet" if index.model_version is None else str(index.model_version)
    items = "\n".join(
        f'<li><a href="{escape(href)}">{escape(href)}</a> ({escape(name)})</li>'
        for name, href in index.links.items()
    )
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(index.name)}</title>\n</head>\n<body>\n"
        f"<h1>{escape(index.name)} {escape(index.version)}</h1>\n"
        f"<p>Serving model version: {escape(model)}.</p>\n<ul>\n{items}\n</ul>\n</body>\n</html>\n"
    )
