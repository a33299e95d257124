"""A page of another origin calls /predict with fetch, in real Chromium against real gunicorn.

Two small sites on their own 127.0.0.1 ports (two origins) serve a page; gunicorn allows the
first by NEURON_CORS_ORIGINS. The browser enforces CORS: the allowed page gets the prediction,
the other a CORS error, from the same request.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from playwright.sync_api import BrowserContext

from tests.integration.server import Gunicorn

PAGE = b"<!doctype html><html><head><title>a front end</title></head><body>app</body></html>"
CALL = """async (url) => {
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({inputs: [[1, 0, 0]]}),
    });
    return {ok: true, status: response.status, body: await response.json(),
            requestId: response.headers.get("X-Request-ID")};
  } catch (error) {
    return {ok: false, error: String(error)};
  }
}"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Site:
    """A page on its own 127.0.0.1 port: its own origin."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def sites() -> Iterator[tuple[Site, Site]]:
    allowed, other = Site(), Site()
    try:
        yield allowed, other
    finally:
        allowed.close()
        other.close()


@pytest.fixture(scope="module")
def cors_server(
    tmp_path_factory: pytest.TempPathFactory, sites: tuple[Site, Site]
) -> Iterator[Gunicorn]:
    allowed, _ = sites
    gunicorn = Gunicorn(
        tmp_path_factory.mktemp("cors"), env={"NEURON_CORS_ORIGINS": allowed.origin}
    )
    try:
        yield gunicorn.start()
    finally:
        gunicorn.stop()


def _fetch_from(browser: BrowserContext, site: Site, url: str) -> tuple[dict[str, Any], list[str]]:
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(site.origin + "/")
    result = page.evaluate(CALL, url)
    page.close()
    return result, errors


def test_a_page_of_an_allowed_origin_gets_the_prediction(
    browser: BrowserContext, sites: tuple[Site, Site], cors_server: Gunicorn
) -> None:
    result, errors = _fetch_from(browser, sites[0], f"{cors_server.url}/predict")
    assert result["ok"], result
    assert result["status"] == 200
    assert result["body"]["predictions"][0] == pytest.approx(0.99993704, abs=1e-6)
    assert result["requestId"]  # an exposed header the page can read
    assert errors == []


def test_a_page_of_another_origin_gets_a_cors_error(
    browser: BrowserContext, sites: tuple[Site, Site], cors_server: Gunicorn
) -> None:
    result, errors = _fetch_from(browser, sites[1], f"{cors_server.url}/predict")
    assert not result["ok"], result
    assert "Failed to fetch" in result["error"]
    assert any("CORS policy" in error for error in errors), errors
    # The service itself answered the preflight normally: nothing went wrong on its side.
    assert "Traceback" not in cors_server.log()


def test_unset_a_page_of_any_origin_gets_a_cors_error(
    browser: BrowserContext, sites: tuple[Site, Site], shared_server: Gunicorn
) -> None:
    result, errors = _fetch_from(browser, sites[0], f"{shared_server.url}/predict")
    assert not result["ok"], result
    assert any("CORS policy" in error for error in errors), errors
