"""Fixtures of the browser tests: Debian's chromium under Playwright, with a fresh profile."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, sync_playwright

from . import chromium


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    """/usr/bin/chromium, installed first if missing; mandatory in CI, else skipped with why."""
    problem = chromium.ensure()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    return chromium.CHROMIUM


@pytest.fixture
def browser(chromium_path: Path, tmp_path: Path) -> Iterator[BrowserContext]:
    """A headless Chromium context on a new user-data directory, closed afterwards."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "profile",
            executable_path=str(chromium_path),
            headless=True,
            args=list(chromium.FLAGS),
            viewport={"width": 1280, "height": 900},
        )
        context.set_default_timeout(20_000)
        try:
            yield context
        finally:
            context.close()
