"""The app on a PostgreSQL store (in process): readiness, 503s and the store gauge in an outage."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.app import create_app
from service.settings import Settings, store_kind

from .conftest import AUTH, TOKEN
from .integration.server import ROOT
from .pg import PostgresCluster

ROWS = {"inputs": [[1, 0, 0], [0, 1, 1]]}


def store_up_gauge(client) -> float:
    for line in client.get("/metrics").get_data(as_text=True).splitlines():
        if line.startswith("neuron_store_up"):
            return float(line.split()[-1])
    raise AssertionError("no neuron_store_up in /metrics")


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.02)


def test_store_down_keeps_serving_says_so_and_refuses_writes(
    pg_private: PostgresCluster, tmp_path: Path
) -> None:
    url = pg_private.create_database()
    app = create_app(Settings(store_url=url, model_dir=tmp_path / "m", admin_token=TOKEN))
    client = app.test_client()
    store = app.extensions["neuron"].store
    try:
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json == {
            "status": "ready", "model_version": 1, "store": "up"
        }  # fmt: skip
        assert store_up_gauge(client) == 1
        before = client.post("/predict", json=ROWS).json

        pg_private.stop()
        wait_for(lambda: client.get("/readyz").json.get("store") == "down")
        assert client.get("/readyz").status_code == 200
        assert store_up_gauge(client) == 0
        for _ in range(50):
            answer = client.post("/predict", json=ROWS)
            assert answer.status_code == 200 and answer.json == before
        model = client.get("/model")
        assert model.status_code == 200 and model.json["kept_versions"] == [1]
        for path, body in (("/admin/retrain", {}), ("/admin/rollback", {"version": 1})):
            refused = client.post(path, json=body, headers=AUTH)
            assert refused.status_code == 503, refused.data
            assert refused.json["error"]["code"] == "storage_unavailable"
            assert "unreachable" in refused.json["error"]["message"]

        pg_private.start()
        wait_for(lambda: client.get("/readyz").json.get("store") == "up")
        assert store_up_gauge(client) == 1
        retrained = client.post("/admin/retrain", json={}, headers=AUTH)
        assert retrained.status_code == 200 and retrained.json["model_version"] == 2
        assert client.get("/model").json["kept_versions"] == [2, 1]
    finally:
        store.close()


def test_started_with_the_store_down_and_no_model_is_not_ready(
    pg_private: PostgresCluster, tmp_path: Path
) -> None:
    url = pg_private.create_database()
    pg_private.stop()
    app = create_app(Settings(store_url=url, model_dir=tmp_path / "m", admin_token=TOKEN))
    client = app.test_client()
    store = app.extensions["neuron"].store
    try:
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503 and not_ready.json["error"]["code"] == "not_ready"
        assert client.post("/predict", json=ROWS).status_code == 503
        pg_private.start()
        wait_for(lambda: client.get("/readyz").status_code == 200, timeout=10)
        assert client.post("/predict", json=ROWS).status_code == 200
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        (None, "directory"),
        ("", "directory"),
        ("var/model", "directory"),
        ("file:///data/model", "directory"),
        ("postgresql://neuron:secret@db:5432/neuron", "postgresql"),
        ("postgres://db/neuron", "postgresql"),
    ],
)
def test_store_url_names_the_backend(url: str | None, kind: str) -> None:
    assert store_kind(url) == kind


def test_an_unknown_store_url_is_refused_at_start_up_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(store_url="mysql://user:hunter2-password@db/neuron")
    assert "mysql" in str(refused.value) and "hunter2" not in str(refused.value)


def test_a_file_url_is_a_directory_store(tmp_path: Path) -> None:
    app = create_app(Settings(store_url=f"file://{tmp_path}/files", model_dir=tmp_path / "other"))
    assert (tmp_path / "files" / "model-00000001.json").exists()
    assert not (tmp_path / "other").exists()
    assert app.test_client().get("/readyz").json["store"] == "up"


def test_the_directory_store_does_not_load_psycopg(tmp_path: Path) -> None:
    code = (
        "import sys; from service.app import create_app; from service.settings import Settings;"
        f"create_app(Settings(model_dir={str(tmp_path)!r}));"
        "print('psycopg' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "False", result.stderr
