from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .server import Gunicorn


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Gunicorn]:
    """gunicorn with two workers on a free port; stopped (by its process group) afterwards."""
    gunicorn = Gunicorn(tmp_path / "server")
    try:
        yield gunicorn.start()
    finally:
        gunicorn.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    """One gunicorn for a module's read-only tests (they must not change its model)."""
    gunicorn = Gunicorn(tmp_path_factory.mktemp("shared"))
    try:
        yield gunicorn.start()
    finally:
        gunicorn.stop()
