"""Training jobs in process: the boards' contract, reaping, shutdown, bodies read back."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.app import create_app
from service.errors import MalformedEncoding, PayloadTooLarge
from service.jobs import JobRunner, Jobs
from service.jobs.board import Board, DirectoryBoard
from service.jobs.job import Job, new_id, now
from service.jobs.runner import BEAT_SECONDS
from service.jobs.spool import body_path, open_body, spool
from service.settings import Settings

from .conftest import AUTH

CSV = {**AUTH, "Content-Type": "text/csv"}
ROWS = b"a,b,y\n" + b"1,2,1\n0,-1,0\n2,3,1\n-1,0,0\n" * 10


def runner_of(app: Flask) -> JobRunner:
    """The training process's loop, over the app's store, run here step by step."""
    jobs: Jobs = app.extensions["neuron_jobs"]
    return JobRunner(jobs, app.extensions["neuron"])


def test_a_job_runs_through_the_runner_and_its_model_is_served(
    app: Flask, client: FlaskClient
) -> None:
    posted = client.post("/admin/jobs?standardize=true", data=ROWS, headers=CSV)
    assert posted.status_code == 202 and posted.headers["Location"].endswith(posted.json["id"])
    runner = runner_of(app)
    assert runner.run_next() and not runner.run_next()  # one job, then nothing queued
    done = client.get(posted.headers["Location"], headers=AUTH).json
    assert done["state"] == "succeeded", done
    assert client.get("/model").json["version"] == done["result"]["model_version"] == 2


def test_jobs_can_be_turned_off_and_the_token_is_checked_first(model_dir: Path) -> None:
    client = create_app(
        Settings(model_dir=model_dir, admin_token=AUTH["Authorization"][7:], jobs_enabled=False)
    ).test_client()
    assert client.post("/admin/jobs", data=ROWS).status_code == 401
    off = client.post("/admin/jobs", data=ROWS, headers=CSV)
    assert off.status_code == 404 and "NEURON_JOBS_ENABLED" in off.json["error"]["message"]
    assert b"neuron_training_jobs{" not in client.get("/metrics").data


@pytest.mark.parametrize("job_id", ["0" * 32, "nope", "../" + "0" * 29, "A" * 32])
def test_an_unknown_or_malformed_job_id_is_404(client: FlaskClient, job_id: str) -> None:
    answer = client.get(f"/admin/jobs/{job_id}", headers=AUTH)
    assert answer.status_code == 404 and answer.json["error"]["code"] == "not_found"


def test_a_shutdown_puts_the_job_in_training_back_in_the_queue(
    app: Flask, client: FlaskClient
) -> None:
    query = "?standardize=true&iterations=1000000&batch_size=8"
    posted = client.post(f"/admin/jobs{query}", data=ROWS, headers=CSV).json
    runner = runner_of(app)
    threading.Timer(0.5, runner.stop.set).start()
    assert runner.run_next()
    job = client.get(f"/admin/jobs/{posted['id']}", headers=AUTH).json
    assert job["state"] == "queued" and job["started_at"] is None
    assert body_path(app.extensions["neuron_jobs"].directory, posted["id"]).exists()
    assert client.get("/model").json["version"] == 1


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _stored(jobs: Jobs, **fields: object) -> Job:
    fields = {"node": jobs.node, **fields}
    job = Job(id=new_id(), created_at=now(), content_type="text/csv", **fields)  # type: ignore[arg-type]
    jobs.board.add(job)
    return job


def test_reaping_fails_what_no_live_process_runs_and_leaves_the_rest(app: Flask) -> None:
    jobs: Jobs = app.extensions["neuron_jobs"]
    alive, now_s = os.getpid(), time.time()
    dead = _stored(jobs, state="running", runner=_dead_pid(), heartbeat_at=now_s)
    silent = _stored(
        jobs, state="running", runner=1, node="elsewhere:/jobs", heartbeat_at=now_s - 60
    )
    heard = _stored(jobs, state="running", runner=1, node="elsewhere:/jobs", heartbeat_at=now_s - 1)
    lost = _stored(jobs, state="queued", heartbeat_at=now_s)  # its body is not on disk
    running_here = _stored(jobs, state="running", runner=alive, heartbeat_at=now_s)
    runner_of(app).reap()
    states = {job.id: jobs.get(job.id) for job in (dead, silent, heard, lost, running_here)}
    assert states[dead.id].state == "failed" and "ended while it ran" in str(states[dead.id].error)
    assert states[silent.id].state == "failed" and "not been heard of" in str(
        states[silent.id].error
    )
    assert states[lost.id].state == "failed" and "no longer on disk" in str(states[lost.id].error)
    assert states[heard.id].state == "running" and states[running_here.id].state == "running"


def test_the_heartbeat_keeps_this_hosts_jobs_alive(app: Flask) -> None:
    jobs: Jobs = app.extensions["neuron_jobs"]
    queued = _stored(jobs, state="queued", heartbeat_at=0.0)
    runner = runner_of(app)
    runner._beat_once()
    assert time.time() - jobs.get(queued.id).heartbeat_at < BEAT_SECONDS


def test_ended_jobs_beyond_the_kept_number_are_removed(model_dir: Path) -> None:
    app = create_app(
        Settings(model_dir=model_dir, admin_token=AUTH["Authorization"][7:], keep_jobs=3)
    )
    jobs: Jobs = app.extensions["neuron_jobs"]
    made = [_stored(jobs, state="succeeded") for _ in range(5)]
    cancelled = _stored(jobs, state="cancelled")  # e.g. on another replica: its body stayed here
    waiting = _stored(jobs, state="queued", heartbeat_at=time.time())
    bodies = {name: body_path(jobs.directory, name) for name in (waiting.id, cancelled.id)}
    bodies |= {
        "stray": body_path(jobs.directory, new_id()),
        "fresh": body_path(jobs.directory, new_id()),
    }
    for path in bodies.values():
        path.write_bytes(ROWS)
    os.utime(bodies["stray"], (time.time() - 120, time.time() - 120))  # a POST that died
    runner_of(app).reap()
    kept = {job.id for job in jobs.recent(100)}
    assert kept == {waiting.id, cancelled.id, *(job.id for job in made[3:])}
    left = {name for name, path in bodies.items() if path.exists()}
    assert left == {waiting.id, "fresh"}  # a fresh one may be a POST between spool and add


# -- the boards' contract, on both stores ------------------------------------------------------


@pytest.fixture(params=["directory", "postgresql"])
def board(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Board]:
    if request.param == "directory":
        yield DirectoryBoard(tmp_path / "jobs")
        return
    from service.jobs.pgboard import PostgresBoard
    from service.store.postgres import PostgresStore

    store = PostgresStore(request.getfixturevalue("pg_url"), watch=False)
    yield PostgresBoard(store)


def _job(**fields: object) -> Job:
    return Job(id=new_id(), created_at=now(), content_type="text/csv", node="n", **fields)  # type: ignore[arg-type]


def test_a_board_keeps_updates_and_lists_newest_first(board: Board) -> None:
    first, second = _job(), _job()
    board.add(first)
    time.sleep(0.002)
    board.add(second)
    assert [job.id for job in board.recent(10)] == [second.id, first.id]
    moved = board.update(first.id, lambda job: job.moved(state="running"))
    assert moved is not None and board.get(first.id) == moved
    assert board.update(new_id(), lambda job: job) is None
    board.remove(first.id)
    assert board.get(first.id) is None and [j.id for j in board.recent(10)] == [second.id]


def test_concurrent_updates_lose_nothing(board: Board) -> None:
    """Progress writes from one side, a cancel from the other: the cancel always survives."""
    job = _job(state="running")
    board.add(job)

    def progress() -> None:
        for i in range(40):
            board.update(
                job.id, lambda j, i=i: j.moved(progress={"fraction": i / 40, "phase": "training"})
            )

    threads = [threading.Thread(target=progress) for _ in range(3)]
    for thread in threads:
        thread.start()
    board.update(job.id, lambda j: j.moved(cancel_requested=True))
    for thread in threads:
        thread.join(30)
    assert board.get(job.id).cancel_requested  # type: ignore[union-attr]


def test_only_one_holder_of_the_training_slot(board: Board) -> None:
    board.add(_job())
    with board.training_slot() as first, board.training_slot() as second:
        assert first and not second
    with board.training_slot() as again:
        assert again


def test_a_damaged_job_file_hides_no_other_job(app: Flask, client: FlaskClient) -> None:
    posted = client.post("/admin/jobs", data=ROWS, headers=CSV).json
    directory = app.extensions["neuron_jobs"].directory
    damaged = new_id()
    (directory / f"{damaged}.json").write_bytes(b'{"id": "trunc')
    listed = client.get("/admin/jobs", headers=AUTH)
    assert listed.status_code == 200
    assert [job["id"] for job in listed.json["jobs"]] == [posted["id"]]
    answer = client.get(f"/admin/jobs/{damaged}", headers=AUTH)
    assert answer.status_code == 503 and answer.json["error"]["code"] == "storage_unavailable"
    assert runner_of(app).run_next()  # the loop goes on past it


def test_no_job_ever_posted_leaves_the_model_directory_as_it_was(tmp_path: Path) -> None:
    board = DirectoryBoard(tmp_path / "jobs")
    with board.training_slot() as held:
        assert not held
    assert board.recent(10) == [] and not (tmp_path / "jobs").exists()


# -- bodies on disk -------------------------------------------------------------------------------


def _read(tmp_path: Path, data: bytes, encoding: str | None, limit: int = 1 << 20) -> bytes:
    path = tmp_path / "body"
    spool(io.BytesIO(data), path, limit)
    with open_body(path, encoding, limit, lambda n: None) as body:
        return body.read()


@pytest.mark.parametrize(
    ("packed", "encoding"),
    [
        (ROWS, None),
        (gzip.compress(ROWS), "gzip"),
        (gzip.compress(ROWS[:7]) + gzip.compress(ROWS[7:]), "gzip"),
        (zlib.compress(ROWS), "deflate"),
    ],
)
def test_bodies_read_back_as_sent(tmp_path: Path, packed: bytes, encoding: str | None) -> None:
    assert _read(tmp_path, packed, encoding) == ROWS


@pytest.mark.parametrize(
    ("packed", "encoding", "error"),
    [
        (gzip.compress(ROWS)[:-5], "gzip", MalformedEncoding),
        (b"plain", "gzip", MalformedEncoding),
        (zlib.compress(ROWS) + b"junk", "deflate", MalformedEncoding),
        (gzip.compress(b"0" * (2 << 20)), "gzip", PayloadTooLarge),
    ],
)
def test_bad_or_oversized_encodings_are_refused(
    tmp_path: Path, packed: bytes, encoding: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        _read(tmp_path, packed, encoding)


def test_a_body_over_the_limit_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(PayloadTooLarge):
        spool(io.BytesIO(b"x" * 5000), tmp_path / "body", 4096)
    assert list(tmp_path.iterdir()) == []


def test_a_bombs_cost_is_bounded_by_the_decoded_limit_not_its_ratio(tmp_path: Path) -> None:
    """A 4x bigger limit costs about 4x, never more than 10x (the decoder stops at the limit)."""

    def seconds(limit: int) -> float:
        bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB decoded from about 64 kB
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            with pytest.raises(PayloadTooLarge):
                _read(tmp_path, bomb, "gzip", limit)
            best = min(best, time.perf_counter() - started)
        return best

    small, large = seconds(2 << 20), seconds(8 << 20)
    assert large < 10 * small + 0.05, (small, large)
