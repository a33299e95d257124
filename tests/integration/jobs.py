"""Helpers of the training-job tests: data as a user has it, and following a job over HTTP."""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
import requests

from .server import TOKEN, Gunicorn

AUTH = {"Authorization": f"Bearer {TOKEN}"}
ENDED = ("succeeded", "failed", "cancelled")


def raw_table(rows: int, features: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw features on scales from 0.01 to 1,000 with offsets; a noisy logistic 0/1 target."""
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-2, 3, features)
    offset = rng.normal(0, 3, features) * scale
    normal = rng.normal(size=(rows, features))
    weights = rng.normal(size=features)
    chance = 1 / (1 + np.exp(-(normal @ weights + 0.3)))
    targets = (rng.random(rows) < chance).astype(np.int64)
    return normal * scale + offset, targets


def as_csv(inputs: np.ndarray, targets: np.ndarray) -> bytes:
    """A header x0..xN,y and rows as numpy writes them (%.6g: what an export looks like)."""
    out = io.BytesIO()
    header = ",".join([*(f"x{i}" for i in range(inputs.shape[1])), "y"])
    np.savetxt(
        out,
        np.column_stack([inputs, targets]),
        delimiter=",",
        fmt=["%.6g"] * inputs.shape[1] + ["%d"],
        header=header,
        comments="",
    )
    return out.getvalue()


def submit(server: Gunicorn, body: bytes, content_type: str = "text/csv", **query: Any) -> Any:
    answer = server.post(
        "/admin/jobs",
        data=body,
        params=query,
        headers={**AUTH, "Content-Type": content_type},
        timeout=120,
    )
    assert answer.status_code == 202, answer.text
    assert answer.headers["Location"] == f"/admin/jobs/{answer.json()['id']}"
    return answer.json()


def job(server: Gunicorn, job_id: str) -> Any:
    answer = server.get(f"/admin/jobs/{job_id}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    return answer.json()


def cancel(server: Gunicorn, job_id: str) -> Any:
    """DELETE the job; the response."""
    return requests.delete(f"{server.url}/admin/jobs/{job_id}", headers=AUTH, timeout=10)


def follow(
    server: Gunicorn, job_id: str, until: tuple[str, ...] = ENDED, timeout: float = 60
) -> list[Any]:
    """GET the job every 0.1 s until its state is one of ``until``; every reading, in order."""
    readings: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readings.append(job(server, job_id))
        if readings[-1]["state"] in until:
            return readings
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {readings[-1]['state']} after {timeout}s")


def long_job(rows: int = 20_000) -> tuple[bytes, dict[str, Any]]:
    """A job that trains for minutes unless stopped: many small steps."""
    inputs, targets = raw_table(rows, 4, seed=9)
    return as_csv(inputs, targets), {
        "standardize": "true",
        "iterations": 1_000_000,
        "batch_size": 64,
    }
