"""Training jobs on the PostgreSQL store with two replicas (own job directories, one database)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .jobs import AUTH, as_csv, cancel, follow, job, long_job, raw_table, submit
from .server import Gunicorn
from .server import replicas as start_replicas


@pytest.fixture
def replicas(pg_url: str, tmp_path: Path) -> Iterator[list[Gunicorn]]:
    """Two replicas of one PostgreSQL store, each with a job directory of its own."""
    envs = [
        {"NEURON_STORE_URL": pg_url, "NEURON_JOB_DIR": str(tmp_path / f"jobs{i}")} for i in (0, 1)
    ]
    with start_replicas(envs, tmp_path) as servers:
        yield servers


def test_a_job_posted_to_one_replica_is_seen_and_its_model_served_by_the_other(
    replicas: list[Gunicorn],
) -> None:
    first, second = replicas
    inputs, targets = raw_table(20_000, 4, seed=3)
    posted = submit(first, as_csv(inputs, targets), standardize="true")
    readings = follow(second, posted["id"])  # the other replica answers for it all along
    done = readings[-1]
    assert done["state"] == "succeeded", done["error"]
    served = done["result"]["model_version"]
    rows = {"inputs": inputs[:2].tolist()}
    deadline, streak = time.monotonic() + 5, 0
    while streak < 20 and time.monotonic() < deadline:  # every worker, on fresh connections
        streak = (
            streak + 1 if second.post("/predict", rows).json().get("model_version") == served else 0
        )
    assert streak == 20, "the other replica does not serve the job's model within 5 s"
    listed = [j["id"] for j in second.get("/admin/jobs", headers=AUTH).json()["jobs"]]
    assert posted["id"] in listed


def test_one_job_trains_at_a_time_across_replicas_and_a_cancel_reaches_across(
    replicas: list[Gunicorn],
) -> None:
    first, second = replicas
    body, query = long_job()
    running = submit(first, body, **query)
    follow(second, running["id"], until=("running",))
    inputs, targets = raw_table(1_000, 3)
    waiting = submit(second, as_csv(inputs, targets), standardize="true")
    time.sleep(2.0)  # the second replica's training process polls several times meanwhile
    assert job(first, waiting["id"])["state"] == "queued"
    assert cancel(second, running["id"]).status_code == 202  # asked on the other replica
    assert follow(first, running["id"], timeout=5)[-1]["state"] == "cancelled"
    done = follow(first, waiting["id"], timeout=30)[-1]
    assert done["state"] == "succeeded", done["error"]


def test_a_job_of_a_replica_that_died_is_failed_by_the_other(pg_url: str, tmp_path: Path) -> None:
    env = {"NEURON_STORE_URL": pg_url, "NEURON_JOB_HEARTBEAT_TIMEOUT_SECONDS": "3"}
    envs = [{**env, "NEURON_JOB_DIR": str(tmp_path / f"jobs{i}")} for i in (0, 1)]
    with start_replicas(envs, tmp_path) as servers:
        doomed, survivor = servers
        body, query = long_job()
        running = submit(doomed, body, **query)
        follow(survivor, running["id"], until=("running",))
        assert doomed.proc is not None
        os.killpg(doomed.proc.pid, signal.SIGKILL)  # the whole replica, as a lost host
        done = follow(survivor, running["id"], timeout=15)[-1]
        assert done["state"] == "failed"
        assert "has not been heard of" in done["error"]["error"]["message"]
        inputs, targets = raw_table(1_000, 3)
        after = submit(survivor, as_csv(inputs, targets), standardize="true")
        assert follow(survivor, after["id"], timeout=30)[-1]["state"] == "succeeded"
