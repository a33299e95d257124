"""Schema-driven fuzzing of every operation in the service's own /openapi.json (Schemathesis).

Positive and negative cases; checks: no 5xx, documented status codes, documented content
types, responses matching their schemas. Admin operations run with and without the token.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import openapi_document
from tests.integration.server import TOKEN, Gunicorn

from .conftest import Record

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 150
MIN_CASES = 1000
_cases: Counter[str] = Counter()
_statuses: Counter[int] = Counter()


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    # Small training limits keep the generated retrains fast; larger ones answer 422.
    env = {"NEURON_MAX_ITERATIONS": "2000", "NEURON_TRAINING_BUDGET_SECONDS": "2"}
    server = Gunicorn(tmp_path_factory.mktemp("fuzz") / "s", env=env)
    try:
        yield server.start()
    finally:
        server.stop()


# Built from the same document the service serves (a test below checks they are equal): the
# lazy from_fixture loader of Schemathesis 4.32 fails under pytest 9 (it sets Node._nodeid).
schema = schemathesis.openapi.from_dict(openapi_document())
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same cases on every run: a CI failure reproduces locally
    database=None,
)


@schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_with_the_token(case: schemathesis.Case, fuzzed_server: Gunicorn) -> None:
    response = case.call_and_validate(
        base_url=fuzzed_server.url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=CHECKS,
        timeout=30,
    )
    _cases[f"{case.operation.method.upper()} {case.operation.path} (token)"] += 1
    _statuses[response.status_code] += 1


@schema.include(path_regex="^/admin/").parametrize()
@FUZZ_SETTINGS
def test_admin_operations_without_the_token(
    case: schemathesis.Case, fuzzed_server: Gunicorn
) -> None:
    if case.headers:
        case.headers.pop("Authorization", None)
    response = case.call_and_validate(base_url=fuzzed_server.url, checks=CHECKS, timeout=30)
    _cases[f"{case.operation.method.upper()} {case.operation.path} (no token)"] += 1
    _statuses[response.status_code] += 1
    # 405 only for a negative case sending an undocumented method (refused before the token)
    documented = case.method.lower() == case.operation.method.lower()
    assert response.status_code == 401 or (response.status_code == 405 and not documented)


def test_the_fuzzed_schema_is_the_served_one(fuzzed_server: Gunicorn) -> None:
    assert fuzzed_server.get("/openapi.json").json() == openapi_document()


def test_fuzzing_summary(fuzzed_server: Gunicorn, record: Record) -> None:
    total = sum(_cases.values())
    server_errors = sum(n for status, n in _statuses.items() if status >= 500)
    fuzzed_server.stop()  # every log line written
    logged = [line for line in fuzzed_server.log_lines() if line["level"] in ("error", "critical")]
    record(
        load=f"{total} generated cases over {len(_cases)} operation/auth pairs "
        f"(Schemathesis {schemathesis.__version__}, positive and negative)",
        faults="schema-derived and schema-violating bodies, admin with and without the token",
        failures=f"{server_errors} 5xx, 0 undocumented statuses, content types or bodies "
        f"(else the cases above fail); {len(logged)} error log lines",
        cases=total,
        statuses={str(k): v for k, v in sorted(_statuses.items())},
        per_operation=dict(sorted(_cases.items())),
    )
    assert total >= MIN_CASES, _cases
    assert server_errors == 0
    assert logged == []
