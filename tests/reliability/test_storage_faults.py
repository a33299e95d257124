"""A full or read-only model directory during retrains: a clear 5xx, nothing half-written,
the old model keeps serving. The directory is a tiny tmpfs mounted for the test (needs root)."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.store import TEMP_PREFIX, ModelStore
from tests.integration.server import TOKEN, Gunicorn

from .conftest import Record

AUTH = {"Authorization": f"Bearer {TOKEN}"}
PAGE = os.sysconf("SC_PAGE_SIZE")
RETRAIN = {"inputs": [[0, 0, 1], [1, 1, 1]], "targets": [1, 0], "iterations": 500}
_outcomes: list[str] = []

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)"
)


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[Gunicorn]:
    """gunicorn whose model directory is a 512 KiB tmpfs, unmounted afterwards."""
    server = Gunicorn(tmp_path / "s")
    server.model_dir.mkdir(parents=True)
    _mount("-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(server.model_dir))
    try:
        server.start()
        _wait_for_both_workers(server)
        yield server
    finally:
        server.stop()
        subprocess.run(["umount", str(server.model_dir)], check=True, timeout=30)


def _wait_for_both_workers(server: Gunicorn) -> None:
    """Until both workers have loaded the model: the second one may still hold the lock file
    open for writing, and a read-only remount would fail with EBUSY."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        lines = server.log_lines()
        if len({line["pid"] for line in lines if "serving model" in line["msg"]}) >= 2:
            return
        time.sleep(0.05)
    raise TimeoutError("the workers did not both load the model")


def _fill(directory: Path, leave_pages: int) -> Path:
    """Fill the file system, then free exactly ``leave_pages`` pages."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(10_000):  # 512 KiB is 128 pages; bounded either way
            try:
                os.write(fd, b"\0" * PAGE)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    finally:
        os.close(fd)
    size = filler.stat().st_size
    os.truncate(filler, size - size % PAGE - leave_pages * PAGE)
    return filler


def _assert_unharmed(server: Gunicorn) -> None:
    names = sorted(p.name for p in server.model_dir.iterdir() if p.name != "filler")
    assert names == [".lock", "CURRENT", "model-00000001.json"], names
    assert ModelStore(server.model_dir).read(1).version == 1
    answers = [server.post("/predict", {"inputs": [[1, 0, 0]]}) for _ in range(10)]
    assert {a.status_code for a in answers} == {200}
    assert {a.json()["model_version"] for a in answers} == {1}
    assert server.get("/readyz").status_code == 200


def _check_refusal(server: Gunicorn, path: str, body: dict, status: int, code: str) -> None:
    response = server.post(path, body, headers=AUTH)
    _outcomes.append(f"{path} {response.status_code}")
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == code
    assert not [p for p in server.model_dir.iterdir() if p.name.startswith(TEMP_PREFIX)]


@pytest.mark.parametrize(
    "free_pages",
    [pytest.param(0, id="no room at all"), pytest.param(1, id="room for the model only")],
)
def test_retrain_on_a_full_disk_is_refused_with_507(tiny: Gunicorn, free_pages: int) -> None:
    filler = _fill(tiny.model_dir, free_pages)
    for _ in range(3):
        _check_refusal(tiny, "/admin/retrain", RETRAIN, 507, "insufficient_storage")
        _check_refusal(tiny, "/admin/rollback", {"version": 1}, 507, "insufficient_storage")
    _assert_unharmed(tiny)
    filler.unlink()
    response = tiny.post("/admin/retrain", RETRAIN, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == 2


def test_retrain_on_a_read_only_directory_is_refused_with_503(tiny: Gunicorn) -> None:
    _mount("-o", "remount,ro", str(tiny.model_dir))
    try:
        for _ in range(3):
            _check_refusal(tiny, "/admin/retrain", RETRAIN, 503, "storage_unavailable")
            _check_refusal(tiny, "/admin/rollback", {"version": 1}, 503, "storage_unavailable")
        _assert_unharmed(tiny)
        tiny.restart()  # a start on a read-only directory serves what is there
        _assert_unharmed(tiny)
    finally:
        _mount("-o", "remount,rw", str(tiny.model_dir))
    response = tiny.post("/admin/retrain", RETRAIN, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == 2


def test_storage_summary(record: Record) -> None:
    refused = [o for o in _outcomes if o.endswith(("507", "503"))]
    record(
        load=f"{len(_outcomes)} retrains and rollbacks on a 512 KiB tmpfs",
        faults="disk full (0 pages free; 1 page: the model fits, CURRENT does not), "
        "read-only remount",
        failures=f"{len(_outcomes) - len(refused)} not refused with 507/503; "
        "0 half-written files, old model served throughout",
    )
    assert len(_outcomes) == 18 and len(refused) == 18
