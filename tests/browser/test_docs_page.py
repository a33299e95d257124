"""/ and /docs in a real headless Chromium against real gunicorn, as a person would use them.

Every request the page makes is recorded and must go to the service's own origin; every
Content-Security-Policy violation is recorded and there must be none.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from service.http.docs import DOCS_CSP
from tests.integration.server import ROOT, TOKEN, Gunicorn

SCREENSHOT = ROOT / "docs" / "img" / "docs.png"
REFERENCE = "0.9999370"  # the classic prediction for [1, 0, 0], 0.99993704...
# Installed before any page script runs (Playwright's init script is not subject to the CSP).
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


class Recorder:
    """Every request of the browser context, console errors and CSP violations of the page."""

    def __init__(self, context: BrowserContext) -> None:
        self.requests: list[str] = []
        self.console_errors: list[str] = []
        context.on("request", lambda request: self.requests.append(request.url))
        context.add_init_script(RECORD_VIOLATIONS)

    def watch(self, page: Page) -> Page:
        page.on(
            "console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None
        )
        return page


def _operation(page: Page, block_id: str) -> Any:
    """Expand one operation and press "Try it out"."""
    block = page.locator(f"#{block_id}")
    block.locator(".opblock-summary").first.click()
    block.locator("button.try-out__btn").click()
    return block


def _execute(block: Any) -> Any:
    block.locator("button.execute").click()
    return block.locator(".live-responses-table")


def _authorize(page: Page, token: str) -> None:
    page.locator(".scheme-container button.authorize").click()
    modal = page.locator(".modal-ux")
    modal.locator("input").first.fill(token)
    modal.locator("button.authorize").click()
    modal.locator("button.btn-done").click()
    expect(modal).to_have_count(0)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _save_screenshot(page: Page, block: Any, tmp_path: Path) -> Path:
    """The page from its top to the end of POST /predict's live response."""
    page.evaluate("window.scrollTo(0, 0)")  # so that the box below is in page coordinates
    box = block.locator(".live-responses-table").bounding_box()
    assert box is not None
    shot = tmp_path / "docs.png"
    bottom = box["y"] + box["height"] + 8
    page.screenshot(
        path=shot, full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": bottom}
    )
    # Committed for the README; refreshed by `make screenshot` (or when absent).
    if os.environ.get("NEURON_UPDATE_SCREENSHOT") or not SCREENSHOT.exists():
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
    return shot


def test_a_person_predicts_and_retrains_from_the_docs_page(
    server: Gunicorn, browser: BrowserContext, tmp_path: Path
) -> None:
    recorder = Recorder(browser)
    page = recorder.watch(browser.new_page())

    # The front door: a page of links; its /docs link leads to the interactive reference.
    page.goto(f"{server.url}/")
    expect(page.locator("h1")).to_contain_text("neuron-service")
    expect(page.locator("body")).to_contain_text("Serving model version: 1.")
    page.locator('a[href="/docs"]').click()
    page.wait_for_url(f"{server.url}/docs")
    expect(page.locator(".information-container .title")).to_contain_text("neuron-service")
    expect(page.locator(".information-container")).to_contain_text("OAS 3.1")
    version = page.evaluate("window.versions.swaggerUI.version")
    assert int(version.split(".")[0]) >= 5

    # POST /predict: "Try it out", "Execute" with the example body, unchanged.
    predict = _operation(page, "operations-model-post_predict")
    response = _execute(predict)
    expect(response.locator("tr.response .response-col_status")).to_have_text("200")
    expect(response).to_contain_text(REFERENCE)
    expect(response).to_contain_text('"model_version": 1')
    shot = _save_screenshot(page, predict, tmp_path)
    width, height = _png_size(shot)
    assert width == 1280 and 900 <= height <= 6000

    # Authorize with the admin token, then retrain from the page with its example body.
    _authorize(page, TOKEN)
    retrain = _operation(page, "operations-admin-post_admin_retrain")
    response = _execute(retrain)
    expect(response.locator("tr.response .response-col_status")).to_have_text("200", timeout=30_000)
    expect(response).to_contain_text('"model_version": 2')
    assert server.get("/model").json()["version"] == 2
    model = _operation(page, "operations-model-get_model")
    expect(_execute(model)).to_contain_text('"version": 2')

    # Every request the browser made went to the service itself, and these are among them.
    assert recorder.requests
    assert {_origin(url) for url in recorder.requests} == {_origin(server.url)}, recorder.requests
    paths = {urlsplit(url).path for url in recorder.requests}
    assert {"/", "/docs", "/openapi.json", "/docs/swagger-ui-bundle.js", "/docs/init.js"} <= paths
    assert {"/predict", "/admin/retrain", "/model"} <= paths

    assert page.evaluate("window.__violations") == []
    assert recorder.console_errors == []
    assert page.evaluate("document.querySelectorAll('script:not([src])').length") == 0


def test_the_page_breaks_visibly_if_the_csp_blocks_it(
    server: Gunicorn, browser: BrowserContext
) -> None:
    """The violation recorder above can fail: a policy without 'self' scripts is caught."""
    recorder = Recorder(browser)
    page = browser.new_page()
    blocked = DOCS_CSP.replace("script-src 'self'", "script-src 'none'")
    page.route(
        f"{server.url}/docs",
        lambda route: route.fulfill(
            response=route.fetch(), headers={"Content-Security-Policy": blocked}
        ),
    )
    page.goto(f"{server.url}/docs")
    page.wait_for_function("window.__violations.length > 0")
    assert any("script-src" in v for v in page.evaluate("window.__violations"))
    assert page.locator("#operations-model-post_predict").count() == 0
    assert recorder.requests


def test_docs_headers_under_gunicorn(shared_server: Gunicorn) -> None:
    response = shared_server.get("/docs")
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert csp == DOCS_CSP
    assert "unsafe" not in csp and "http" not in csp and "*" not in csp
    assert "script-src 'self';" in csp and "default-src 'none';" in csp
    asset = shared_server.get("/docs/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert "max-age=86400" in asset.headers["Cache-Control"]
    missing = shared_server.get("/docs/no-such-asset.js")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


@pytest.fixture
def docs_disabled(tmp_path: Path) -> Iterator[Callable[[], Gunicorn]]:
    """Starts gunicorn with NEURON_DOCS_ENABLED=false; stopped afterwards."""
    servers: list[Gunicorn] = []

    def start() -> Gunicorn:
        server = Gunicorn(tmp_path / "locked", env={"NEURON_DOCS_ENABLED": "false"}).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_docs_disabled_is_404_in_the_browser_too(
    docs_disabled: Callable[[], Gunicorn], browser: BrowserContext
) -> None:
    server = docs_disabled()
    for path in ("/docs", "/docs/init.js", "/docs/swagger-ui-bundle.js"):
        response = server.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    assert "docs" not in server.get("/").json()["links"]
    page = browser.new_page()
    answer = page.goto(f"{server.url}/docs")
    assert answer is not None and answer.status == 404
    expect(page.locator("body")).to_contain_text("not_found")
    page.goto(f"{server.url}/")
    assert page.locator('a[href="/docs"]').count() == 0
    assert server.post("/predict", {"inputs": [[1, 0, 0]]}).json()["predictions"][0] > 0.9999
