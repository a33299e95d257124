"""The index (/) and the interactive API reference (/docs), in process: links, CSP, assets."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from service import __version__
from service.app import create_app
from service.http import docs
from service.settings import Settings

from .conftest import TOKEN

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
LINKS = {"docs", "openapi", "model", "readyz", "metrics", "v2"}


class _Tags(HTMLParser):
    """Every tag of a page with its attributes, and the text inside <script> elements."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text = ""
        self._in_script = False
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text += data

    def urls(self) -> list[str]:
        return [
            value
            for _, attrs in self.tags
            for name, value in attrs.items()
            if name in ("src", "href") and value is not None
        ]


def _csp(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


# -- the index -------------------------------------------------------------------------------


def test_index_says_where_to_go(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.content_type == "application/json"
    assert "Accept" in response.headers["Vary"]
    body = response.get_json()
    assert body["name"] == "neuron-service"
    assert body["version"] == __version__
    assert body["model_version"] == client.get("/model").get_json()["version"] == 1
    assert set(body["links"]) == LINKS
    for href in body["links"].values():
        assert client.get(href).status_code == 200, href


def test_index_follows_a_retrain(client: FlaskClient) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/admin/retrain", headers=auth).status_code == 200
    assert client.get("/").get_json()["model_version"] == 2


def test_a_browser_gets_the_index_as_a_page_of_the_same_links(client: FlaskClient) -> None:
    links = client.get("/", headers={"Accept": "application/json"}).get_json()["links"]
    response = client.get("/", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = _Tags(response.get_data(as_text=True))
    assert page.urls() == list(links.values())
    assert not [tag for tag, _ in page.tags if tag in ("script", "style", "img", "link")]
    csp = _csp(response.headers["Content-Security-Policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/json, text/html"])
def test_clients_not_asking_for_html_first_get_json(client: FlaskClient, accept: str) -> None:
    headers = {} if accept is None else {"Accept": accept}
    assert client.get("/", headers=headers).content_type == "application/json"


def test_index_answers_200_while_no_model_can_be_loaded(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the model directory should be")
    client = create_app(Settings(model_dir=blocker / "model")).test_client()
    assert client.get("/readyz").status_code == 503
    response = client.get("/")
    assert response.status_code == 200
    assert response.get_json()["model_version"] is None


# -- /docs -------------------------------------------------------------------------------------


def test_docs_page_loads_only_its_own_files_with_no_inline_script(client: FlaskClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-cache"
    page = _Tags(response.get_data(as_text=True))
    scripts = [attrs for tag, attrs in page.tags if tag == "script"]
    assert len(scripts) == 2 and all(attrs.get("src") for attrs in scripts)
    assert page.script_text.strip() == ""
    assert not [tag for tag, _ in page.tags if tag == "style"]
    assert not [attrs for _, attrs in page.tags if "style" in attrs or "onload" in attrs]
    urls = page.urls()
    assert len(urls) == 4
    for url in urls:
        assert not re.match(r"^([a-z]+:|//|/)", url), f"{url} is not relative to the service"
        asset = client.get(f"/{url}")
        assert asset.status_code == 200, url
        assert asset.mimetype in ("text/css", "text/javascript", "image/png"), url


def test_docs_csp_is_strict(client: FlaskClient) -> None:
    header = client.get("/docs").headers["Content-Security-Policy"]
    csp = _csp(header)
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval', no host
    assert csp["connect-src"] == ["'self'"]
    assert csp["img-src"] == ["'self'", "data:"]
    assert csp["style-src"] == ["'self'"]  # Swagger UI 5 needs no 'unsafe-inline' (tests/browser)
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert csp["form-action"] == ["'none'"]
    assert "font-src" not in csp  # falls back to default-src 'none': no font from anywhere
    assert not re.search(r"https?:|\*|unsafe", header)


def test_the_initializer_names_the_document_and_turns_the_validator_off(
    client: FlaskClient,
) -> None:
    script = client.get("/docs/init.js").get_data(as_text=True)
    assert 'url: "openapi.json"' in script
    assert "validatorUrl: null" in script
    assert "queryConfigEnabled: false" in script  # ?url=... cannot load another document
    assert "http" not in script


def test_swagger_ui_is_5_or_later_and_is_the_served_bundle(client: FlaskClient) -> None:
    major = int(docs.SWAGGER_UI_VERSION.split(".")[0])
    assert major >= 5  # Swagger UI 4 refuses OpenAPI 3.1 documents
    bundle = client.get("/docs/swagger-ui-bundle.js").get_data(as_text=True)
    built = re.search(r'PACKAGE_VERSION:"([0-9.]+)"', bundle)
    assert built is not None and built.group(1) == docs.SWAGGER_UI_VERSION


@pytest.mark.parametrize("name", ["swagger-ui-bundle.js", "swagger-ui.css", "init.js"])
def test_assets_carry_caching_headers_and_answer_304(client: FlaskClient, name: str) -> None:
    response = client.get(f"/docs/{name}")
    assert response.status_code == 200
    assert response.cache_control.public
    assert response.cache_control.max_age == docs.ASSET_MAX_AGE
    etag = response.headers["ETag"]
    again = client.get(f"/docs/{name}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.get_data() == b""


@pytest.mark.parametrize(
    "path",
    [
        "/docs/nope.js",
        "/docs/index.css",  # in the package, not listed: not served
        "/docs/oauth2-redirect.html",
        "/docs/VERSION",
        "/docs/..%2f..%2fsettings.py",
        "/docs/../service/docs.py",
        "/docs/",
    ],
)
def test_anything_else_under_docs_is_a_json_404(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_an_asset_missing_from_the_install_is_a_404_not_a_500(
    client: FlaskClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docs, "SWAGGER_UI_DIR", tmp_path)
    response = client.get("/docs/swagger-ui-bundle.js")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_disabled_docs_are_not_routes_and_not_linked(model_dir: Path) -> None:
    app = create_app(Settings(model_dir=model_dir, docs_enabled=False))
    client = app.test_client()
    for path in ("/docs", "/docs/init.js", "/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.get_json()["error"]["code"] == "not_found"
    assert not [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/docs")]
    assert set(client.get("/").get_json()["links"]) == LINKS - {"docs"}
    assert "/docs" not in client.get("/", headers={"Accept": BROWSER_ACCEPT}).get_data(as_text=True)
    assert client.post("/predict", json={"inputs": [[1, 0, 0]]}).status_code == 200
