"""Fixtures: settings -> app -> client in process; server / shared_server under real gunicorn."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.app import create_app
from service.settings import Settings

from .integration.server import Gunicorn
from .pg import PostgresCluster, running_cluster

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return tmp_path / "model"


@pytest.fixture
def settings(model_dir: Path) -> Settings:
    return Settings(model_dir=model_dir, admin_token=TOKEN)


@pytest.fixture
def app(settings: Settings) -> Flask:
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


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
    """One gunicorn for a module's tests that leave its model as they found it."""
    gunicorn = Gunicorn(tmp_path_factory.mktemp("shared"))
    try:
        yield gunicorn.start()
    finally:
        gunicorn.stop()


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    """gunicorn with one worker, for a module that measures that worker's CPU time or memory."""
    gunicorn = Gunicorn(tmp_path_factory.mktemp("one-worker"), workers=1)
    try:
        yield gunicorn.start()
    finally:
        gunicorn.stop()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One real PostgreSQL for the session (each test takes its own database); never stopped
    by a test: a test that stops its server uses pg_private."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: PostgresCluster) -> str:
    """A new, empty database on the session's PostgreSQL."""
    return pg_cluster.create_database()


@pytest.fixture
def pg_private() -> Iterator[PostgresCluster]:
    """A PostgreSQL of this test's own, which it may stop and start."""
    with running_cluster() as cluster:
        yield cluster
