"""Fixtures of the reliability suite, and the summary its tests record for RELIABILITY.md.

Each test calls ``record(load=..., faults=..., failures=...)`` with figures it measured; the
rows, each with the test's outcome and duration, are written to ``SUMMARY`` at the end of the
session, and ``python -m tests.reliability.report`` turns them into RELIABILITY.md's table.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.server import ROOT

SUMMARY = Path(os.environ.get("RELIABILITY_SUMMARY", ROOT / "build" / "reliability.json"))
_rows: dict[str, dict[str, Any]] = {}

Record = Callable[..., None]


_modules: dict[str, dict[str, float]] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    module = _modules.setdefault(
        item.nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py"),
        {"passed": 0, "failed": 0, "skipped": 0, "seconds": 0.0},
    )
    module["seconds"] += report.duration
    if report.when == "call" or report.outcome != "passed":
        module[report.outcome] += 1
    row = _rows.get(item.nodeid)
    if row is not None and report.when == "call":
        row["outcome"] = report.outcome
        row["seconds"] = round(report.duration, 1)
    elif row is not None and report.failed:
        row["outcome"] = f"{report.outcome} ({report.when})"
    return report


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Record:
    """record(load=..., faults=..., failures=..., **figures): one row of the table."""

    def _record(*, load: str, faults: str, failures: str, **figures: Any) -> None:
        _rows[request.node.nodeid] = {
            "test": request.node.name,
            "module": request.node.module.__name__.rsplit(".", 1)[-1],
            "load": load,
            "faults": faults,
            "failures": failures,
            "figures": figures,
            "outcome": "not finished",
        }

    return _record


@pytest.fixture(scope="session", autouse=True)
def _write_summary() -> Iterator[None]:
    started = time.monotonic()
    yield
    if not _rows:
        return
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "session_seconds": round(time.monotonic() - started, 1),
        "rows": sorted(_rows.values(), key=lambda row: (row["module"], row["test"])),
        "modules": {
            name: {**counts, "seconds": round(counts["seconds"], 1)}
            for name, counts in sorted(_modules.items())
        },
    }
    SUMMARY.write_text(json.dumps(summary, indent=2) + "\n")
