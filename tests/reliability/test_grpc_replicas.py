"""Replicas on one PostgreSQL store: a retrain through REST reaches gRPC on every worker of
every replica within the limit REST's propagation has (test_replicas.py), on fresh channels."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest

from service.oip.rpc.servicer import REQUEST_ID_KEY
from tests.integration import grpcmsg
from tests.integration.grpcmsg import raw_request
from tests.integration.server import TOKEN, Gunicorn
from tests.integration.server import replicas as start_replicas

from .test_replicas import PROPAGATION_LIMIT, settled_since
from .test_retrain_load import PROBE, SETS

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def replicas(pg_url: str, tmp_path: Path) -> Iterator[list[Gunicorn]]:
    with start_replicas([{"NEURON_STORE_URL": pg_url}] * 2, tmp_path) as servers:
        yield servers


def _grpc_lag(server: Gunicorn, version: int, since: float) -> float:
    """Seconds from ``since`` until CONSECUTIVE fresh gRPC channels in a row answered
    ``version``, every worker among them: the start of that final run."""
    target = server.grpc_target

    def ask(request_id: str) -> int:
        metadata = ((REQUEST_ID_KEY, request_id),)
        return int(grpcmsg.infer(target, raw_request(PROBE), metadata).model_version)

    return settled_since(server, ask, version, since, target)


def test_a_retrain_on_one_replica_reaches_grpc_on_every_replica_in_time(
    replicas: list[Gunicorn],
) -> None:
    lags = []
    for i in range(4):
        response = replicas[i % 2].post("/admin/retrain", SETS[i % 2], headers=AUTH)
        done = time.monotonic()
        assert response.status_code == 200, response.text
        version = response.json()["model_version"]
        with ThreadPoolExecutor(len(replicas)) as pool:
            lags.append(max(pool.map(partial(_grpc_lag, version=version, since=done), replicas)))
    assert max(lags) < PROPAGATION_LIMIT, lags
