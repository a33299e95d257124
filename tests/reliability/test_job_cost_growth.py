"""A training job's hostile bodies cost the training process time linear in their size.

The HTTP side of a job only copies the body to disk; the reading happens in the training
process. So the cost measured here is the training process's CPU (its threads' run time in
/proc/<pid>/task/*/schedstat) from the POST to the job's end, for each family of hostile JSON
bodies (those of test_cost_growth.py) and of hostile CSV bodies, at 256 KiB and at 4 MiB. The
ratio and ceiling are test_cost_growth.py's: linear work stays far under them, quadratic not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.server import TOKEN, Gunicorn

from .conftest import Record
from .test_cost_growth import CEILING_S, FAMILIES, LARGE, MAX_RATIO, NOISE_FLOOR_S, ROUNDS, SMALL
from .test_cost_growth import _cpu_seconds as cpu_seconds

AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON_TEMPLATE = b'{"iterations": 1, "targets": [1], "inputs": %s}'
CSV_FAMILIES: dict[str, Callable[[int], bytes]] = {
    "many rows": lambda n: b"a,b,t\n" + b"1.5,-2,1\n0.5,2,0\n" * (n // 18),
    "blank lines": lambda n: b"a,t\n" + b"\n" * (n - 4),
    "one quoted field": lambda n: b'a,t\n"' + b'""' * ((n - 10) // 2) + b'",1\n',
    "one wide row": lambda n: b"a,t\n" + b"1," * ((n - 6) // 2) + b"\n",
    "wide header": lambda n: b",".join(b"c%d" % i for i in range(n // 8)) + b"\n1\n",
    "bad value last": lambda n: b"a,t\n" + b"1,0\n" * ((n - 10) // 4) + b"x,1\n",
}
CASES = [("json", family) for family in FAMILIES] + [("csv", family) for family in CSV_FAMILIES]
RESULTS: list[dict[str, object]] = []


@pytest.fixture(scope="module")
def trainer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    server = Gunicorn(tmp_path_factory.mktemp("job-cost"), workers=1)
    try:
        yield server.start()
    finally:
        server.stop()


def _body(kind: str, family: str, size: int) -> bytes:
    if kind == "csv":
        return CSV_FAMILIES[family](size)[:size]
    return JSON_TEMPLATE % FAMILIES[family](size - len(JSON_TEMPLATE) + 2)


def _job_cost(server: Gunicorn, kind: str, body: bytes) -> tuple[float, float, str]:
    """(the training process's CPU seconds and the wall seconds from POST to the job's end,
    the job's end state)."""
    deadline = time.monotonic() + 60
    while not server.trainer_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    (pid,) = server.trainer_pids()
    content_type = "text/csv" if kind == "csv" else "application/json"
    before, started = cpu_seconds(pid), time.perf_counter()
    posted = requests.post(
        f"{server.url}/admin/jobs",
        data=body,
        headers={**AUTH, "Content-Type": content_type},
        params={"iterations": "1"} if kind == "csv" else {},
        timeout=60,
    )
    assert posted.status_code == 202, posted.text[:300]
    location = f"{server.url}{posted.headers['Location']}"
    while time.monotonic() < deadline:
        job = requests.get(location, headers=AUTH, timeout=10).json()
        if job["state"] not in ("queued", "running"):
            return cpu_seconds(pid) - before, time.perf_counter() - started, str(job["state"])
        time.sleep(0.05)
    raise AssertionError(f"the job of {len(body)} bytes did not end in 60 s")


@pytest.mark.parametrize(("kind", "family"), CASES, ids=[f"{k} {f}" for k, f in CASES])
def test_a_jobs_cost_grows_linearly(trainer: Gunicorn, kind: str, family: str) -> None:
    small, large = _body(kind, family, SMALL), _body(kind, family, LARGE)
    assert len(small) <= SMALL and len(large) <= LARGE
    for _ in range(ROUNDS):  # another round only if a busy machine blurred the first
        small_cpu, _, small_state = _job_cost(trainer, kind, small)
        large_cpu, large_wall, large_state = _job_cost(trainer, kind, large)
        ratio = large_cpu / max(small_cpu, NOISE_FLOOR_S)
        if ratio <= MAX_RATIO:
            break
    RESULTS.append(
        {  # the columns of RELIABILITY.md's cost table; the status is the job's end state
            "endpoint": f"/admin/jobs ({kind} body, the training process)",
            "family": family,
            "status": large_state,
            "small_cpu_ms": round(small_cpu * 1e3, 1),
            "large_cpu_ms": round(large_cpu * 1e3, 1),
            "large_wall_ms": round(large_wall * 1e3, 1),
            "ratio": round(ratio, 2),
        }
    )
    assert small_state == large_state
    assert large_cpu < CEILING_S, (small_cpu, large_cpu)
    assert ratio <= MAX_RATIO, (small_cpu, large_cpu)


def test_zz_record_the_figures(trainer: Gunicorn, record: Record) -> None:
    """Runs last in the module: the table of figures goes to RELIABILITY.md through report.py."""
    assert len(RESULTS) == len(CASES), "run the whole module to record its figures"
    worst = max(RESULTS, key=lambda row: float(row["ratio"]))  # type: ignore[arg-type]
    slowest = max(RESULTS, key=lambda row: float(row["large_cpu_ms"]))  # type: ignore[arg-type]
    record(
        load=f"{len(CASES)} job body families (JSON and CSV) at 256 KiB and 4 MiB, "
        "the training process's CPU from POST to the job's end",
        faults="the JSON families of the request bodies; CSV: many rows, blank lines, a long "
        "quoted field, a wide row, a wide header, a bad value last",
        failures=f"worst 4 MiB/256 KiB CPU ratio {worst['ratio']} ({worst['endpoint']}, "
        f"{worst['family']}); most CPU {slowest['large_cpu_ms']} ms ({slowest['endpoint']}, "
        f"{slowest['family']})",
        cost=RESULTS,
    )
    assert "Traceback" not in Path(trainer.log_path).read_text(errors="replace")
