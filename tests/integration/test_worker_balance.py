"""Both gunicorn workers serve keep-alive clients that all connect at once.

With one listening socket and gthread's accept loop, the first worker to wake could take every
connection of a burst (measured on the stock gthread worker: 2 bursts in 8 left one worker with
1/8 or none); under keep-alive they stay on it and the other worker idles.
"""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from service.server.fairworker import STALE_SECONDS

from .server import Gunicorn

BURSTS = 6
CONNECTIONS = 16
REQUESTS_PER_CONNECTION = 20
SECONDS = 20.0  # one burst's bound; on a quiet machine it takes well under 1 s
BODY = b'{"inputs": [[1, 0, 0]]}'
HEADERS = {"Content-Type": "application/json"}


def _keepalive_burst(server: Gunicorn) -> int:
    """CONNECTIONS connections opened back to back, then requests on each; returns the 200s."""
    conns = [
        http.client.HTTPConnection(server.host, server.port, timeout=10) for _ in range(CONNECTIONS)
    ]
    for conn in conns:
        conn.connect()
    deadline = time.monotonic() + SECONDS
    ok = Counter[int]()
    closed: list[int] = []

    def drive(conn: http.client.HTTPConnection) -> None:
        for _ in range(REQUESTS_PER_CONNECTION):
            if time.monotonic() > deadline:
                return
            conn.request("POST", "/predict", body=BODY, headers=HEADERS)
            response = conn.getresponse()
            response.read()
            ok[response.status] += 1
            if response.will_close:
                closed.append(1)
                return

    threads = [threading.Thread(target=drive, args=(c,)) for c in conns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SECONDS + 15)
    for conn in conns:
        conn.close()
    assert not closed, "the server closed keep-alive connections"
    return ok[200]


def _served_per_worker(server: Gunicorn) -> Counter[int]:
    """Access-log lines of /predict per worker pid."""
    return Counter(
        line["pid"]
        for line in server.log_lines()
        if line.get("logger") == "neuron.access" and line.get("path") == "/predict"
    )


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[Gunicorn]:
    server = Gunicorn(tmp_path / "s", workers=2)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.mark.integration
def test_every_worker_serves_a_fair_share_of_each_keepalive_burst(two_workers: Gunicorn) -> None:
    workers = two_workers.worker_pids()
    shares: list[dict[int, float]] = []
    before = _served_per_worker(two_workers)
    for _ in range(BURSTS):
        served = _keepalive_burst(two_workers)
        assert served == CONNECTIONS * REQUESTS_PER_CONNECTION
        time.sleep(0.3)  # the burst's last access-log lines reach the file
        after = _served_per_worker(two_workers)
        assert set(after) <= workers  # no worker restarted
        shares.append({pid: round((after[pid] - before[pid]) / served, 3) for pid in workers})
        before = after
    assert min(min(s.values()) for s in shares) >= 0.25, f"share per worker, per burst: {shares}"


def _served_by(server: Gunicorn, request_id: str) -> int:
    time.sleep(0.2)  # the access-log line reaches the file
    return next(
        int(line["pid"]) for line in server.log_lines() if line.get("request_id") == request_id
    )


@pytest.mark.integration
def test_a_hung_worker_does_not_hold_its_sibling_back(two_workers: Gunicorn) -> None:
    """The worker holding a connection leaves the next one to its idle sibling; when that sibling
    hangs (SIGSTOP), its share lapses within STALE_SECONDS instead of stalling new clients until
    gunicorn's worker timeout (30 s)."""
    held = http.client.HTTPConnection(two_workers.host, two_workers.port, timeout=10)
    held.request("POST", "/predict", body=BODY, headers=HEADERS)
    response = held.getresponse()
    response.read()
    holder = _served_by(two_workers, response.headers["X-Request-ID"])
    (sibling,) = two_workers.worker_pids() - {holder}
    os.kill(sibling, signal.SIGSTOP)
    try:
        # Another request on the held connection restarts its keep-alive clock (5 s): without
        # the lapse, the new connection would wait for that, or for the worker timeout.
        held.request("POST", "/predict", body=BODY, headers=HEADERS)
        held.getresponse().read()
        started = time.monotonic()
        fresh = requests.post(
            f"{two_workers.url}/predict", json={"inputs": [[1, 0, 0]]}, timeout=10
        )
        took = time.monotonic() - started
    finally:
        os.kill(sibling, signal.SIGCONT)
        held.close()
    assert fresh.status_code == 200
    assert _served_by(two_workers, fresh.headers["X-Request-ID"]) == holder
    assert took < STALE_SECONDS + 1.5, f"a new connection waited {took:.1f} s"
