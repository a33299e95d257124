"""service.http.arraybody (the numbers-only fast path) against the general reader it stands in for.

The general reader is jsonbody.decode then pydantic's model_validate: the path every body took
before, and still takes whenever the fast path declines. For any body the fast path must
either decline (None) or give exactly what the general reader gives, bit for bit.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from service.errors import MalformedRequest
from service.http import api, arraybody, web
from service.http.jsonbody import decode
from service.http.web import from_array_body
from service.schemas import EvaluateRequest, PredictRequest, Request
from tests.reliability.test_hostile_input import CASES as HOSTILE

MAX_ROWS = 8


def general(model: type[Request], body: bytes, max_rows: int = MAX_ROWS) -> Request | None:
    """The general reader's request, or None where it refuses the body."""
    try:
        decoded = decode(body)
        if not isinstance(decoded.payload, dict):
            return None
        return model.model_validate(
            decoded.payload, context={"max_rows": max_rows, "numbers_only": decoded.numbers_only}
        )
    except (MalformedRequest, ValidationError):
        return None


def same_arrays(fast: Request, slow: Request) -> None:
    assert type(fast) is type(slow)
    assert fast.model_fields_set == slow.model_fields_set
    for name in type(slow).model_fields:
        a, b = getattr(fast, name), getattr(slow, name)
        assert a.dtype == b.dtype == np.float64
        assert a.shape == b.shape
        assert a.tobytes() == b.tobytes(), (a, b)  # bit for bit: -0.0, subnormals


def check(model: type[Request], body: bytes, max_rows: int = MAX_ROWS) -> Request | None:
    """The fast path's request (None: declined), checked against the general reader.

    Both of its readers are checked: orjson for small bodies, simdjson for the others.
    """
    slow = general(model, body, max_rows)
    small = arraybody._SMALL
    results = []
    for threshold in (small, 0):  # 0: every body is read by simdjson
        arraybody._SMALL = threshold
        try:
            results.append(from_array_body(model, body, max_rows))
        finally:
            arraybody._SMALL = small
    for fast in results:
        if fast is not None:
            assert slow is not None, (
                f"the fast path took a body the general reader refuses: {body!r}"
            )
            same_arrays(fast, slow)
    if len(body) > small:
        assert (results[0] is None) is (results[1] is None)
    return results[0]


# -- examples ----------------------------------------------------------------------------------

ACCEPTED = [
    b'{"inputs": [[1, 0, 0]]}',
    b'{"inputs":[[1,0,0],[0.5,-2.5e-3,1E5]]}',
    b' \n{ "inputs" :\t[ [ 1 , 2 ] ,\r\n[3,4] ] } \n',
    b'{"inputs": [[-0, -0.0, 0]]}',
    b'{"inputs": [[5e-324, 1.7976931348623157e308, 18446744073709551615]]}',
    b'{"inputs": [[-9223372036854775808, 1e-400, 0.1]]}',
]


@pytest.mark.parametrize("body", ACCEPTED)
def test_common_bodies_take_the_fast_path_and_equal_the_general_reader(body: bytes) -> None:
    assert check(PredictRequest, body) is not None


def test_a_batch_is_read_whole() -> None:
    rows = np.random.default_rng(0).random((1000, 3))
    body = json.dumps({"inputs": rows.tolist()}).encode()
    fast = check(PredictRequest, body, max_rows=1000)
    assert fast is not None
    assert np.array_equal(fast.inputs, rows)  # the same floats, read a third way


DECLINED = {
    "ragged rows": b'{"inputs": [[1, 0, 0], [1, 0]]}',
    "ragged rows, same total": b'{"inputs": [[1, 0], [1, 0, 0, 0]]}',
    "empty row among full ones": b'{"inputs": [[1], []]}',
    "empty inputs": b'{"inputs": []}',
    "empty row": b'{"inputs": [[]]}',
    "flat inputs": b'{"inputs": [1, 0, 0]}',
    "rows nested deeper": b'{"inputs": [[[1, 0, 0]]]}',
    "boolean": b'{"inputs": [[true, 0, 0]]}',
    "false": b'{"inputs": [[false, 0, 0]]}',
    "string": b'{"inputs": [["1", 0, 0]]}',
    "null": b'{"inputs": [[null, 0, 0]]}',
    "NaN": b'{"inputs": [[NaN, 0, 0]]}',
    "Infinity": b'{"inputs": [[Infinity, 0, 0]]}',
    "-Infinity": b'{"inputs": [[-Infinity, 0, 0]]}',
    "leading zero": b'{"inputs": [[01, 0, 0]]}',
    "leading zero, negative": b'{"inputs": [[-01.5, 0, 0]]}',
    "plus sign": b'{"inputs": [[+1, 0, 0]]}',
    "trailing dot": b'{"inputs": [[1., 0, 0]]}',
    "leading dot": b'{"inputs": [[.5, 0, 0]]}',
    "dot before exponent": b'{"inputs": [[1.e5, 0, 0]]}',
    "bare exponent": b'{"inputs": [[1e, 0, 0]]}',
    "two dots": b'{"inputs": [[1.2.3, 0, 0]]}',
    "hex": b'{"inputs": [[0x10, 0, 0]]}',
    "bare minus": b'{"inputs": [[-, 0, 0]]}',
    "1e999": b'{"inputs": [[1e999, 0, 0]]}',
    "-1e400": b'{"inputs": [[-1e400, 0, 0]]}',
    "integer past a double": b'{"inputs": [[1' + b"0" * 400 + b", 0, 0]]}",
    "duplicate key": b'{"inputs": [[1, 0, 0]], "inputs": [[0, 0, 1]]}',
    "extra key": b'{"inputs": [[1, 0, 0]], "extra": 1}',
    "extra key, numbers only": b'{"inputs": [[1, 0, 0]], "x": [1]}',
    "key spelled with a digit": b'{"in1puts": [[1, 0, 0]]}',
    "key spelled with e": b'{"inputse": [[1, 0, 0]]}',
    "key with a space": b'{"in puts": [[1, 0, 0]]}',
    "key escaped": b'{"in\\u0070uts": [[1, 0, 0]]}',
    "key in capitals": b'{"INPUTS": [[1, 0, 0]]}',
    "form feed as space": b'{"inputs": [[1,\x0c0, 0]]}',
    "vertical tab as space": b'{"inputs": [[1,\x0b0, 0]]}',
    "no-break space": b'{"inputs": [[1,\xc2\xa00, 0]]}',
    "space inside a number": b'{"inputs": [[1 0, 0, 0]]}',
    "number outside the rows": b'{"inputs": [[1, 0, 0]5]}',
    "number before the rows": b'{"inputs": 5[[1, 0, 0]]}',
    "missing comma": b'{"inputs": [[1, 0, 0] [1, 0, 0]]}',
    "trailing comma": b'{"inputs": [[1, 0, 0],]}',
    "trailing comma in a row": b'{"inputs": [[1, 0, 0,]]}',
    "empty value": b'{"inputs": [[1, , 0]]}',
    "trailing bytes": b'{"inputs": [[1, 0, 0]]}x',
    "two documents": b'{"inputs": [[1, 0, 0]]}{}',
    "byte order mark": b'\xef\xbb\xbf{"inputs": [[1, 0, 0]]}',
    "UTF-16": '{"inputs": [[1, 0, 0]]}'.encode("utf-16"),
    "not an object": b"[[1, 0, 0]]",
    "truncated": b'{"inputs": [[1, 0, 0]]',
    "empty body": b"",
    "too many rows": b'{"inputs": [' + b",".join([b"[1, 0, 0]"] * (MAX_ROWS + 1)) + b"]}",
}


@pytest.mark.parametrize("body", list(DECLINED.values()), ids=list(DECLINED))
def test_anything_else_is_declined(body: bytes) -> None:
    assert check(PredictRequest, body) is None


# orjson (small bodies) reads these as the general reader does; simdjson declines them.
BIG_INTEGERS = [
    b'{"inputs": [[18446744073709551616, 0, 0]]}',
    b'{"inputs": [[' + b"9" * 30 + b", -" + b"9" * 20 + b", 0]]}",
]


@pytest.mark.parametrize("body", BIG_INTEGERS)
def test_integers_past_64_bits_are_read_as_floats_or_declined(
    body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    check(PredictRequest, body)
    assert arraybody.read(body, {"inputs": 2}) is not None
    monkeypatch.setattr(arraybody, "_SMALL", 0)
    assert arraybody.read(body, {"inputs": 2}) is None


EVALUATE = {
    b'{"inputs": [[1, 0, 0], [0, 0, 1]], "targets": [1, 0]}': True,
    b'{"targets": [0.25, 1], "inputs": [[1, 0, 0], [0, 0, 1]]}': True,
    b'{"inputs": [[1, 0, 0]], "targets": [1, 0]}': False,  # rows and targets differ
    b'{"inputs": [[1, 0, 0]], "targets": [1.5]}': False,  # outside [0, 1]
    b'{"inputs": [[1, 0, 0]], "targets": [-0.1]}': False,
    b'{"inputs": [[1, 0, 0]], "targets": []}': False,
    b'{"inputs": [[1, 0, 0]], "targets": [[1]]}': False,
    b'{"inputs": [[1, 0, 0]]}': False,  # targets missing
    b'{"inputs": [[1, 0, 0]], "targets": [1], "targets": [0]}': False,
    b'{"inputs": [[1, 0, 0]], "inputs": [[1, 0, 0]]}': False,
}


@pytest.mark.parametrize("body", list(EVALUATE))
def test_evaluate_bodies(body: bytes) -> None:
    fast = check(EvaluateRequest, body)
    assert (fast is not None) is EVALUATE[body]
    if fast is not None:
        assert isinstance(fast, EvaluateRequest)
        assert fast.targets.shape == (len(fast.inputs), 1)


def test_a_parser_still_in_use_is_not_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy into the pooled parser's document makes the next read decline, not fail."""
    monkeypatch.setattr(arraybody, "_SMALL", 0)
    arraybody.read(b'{"inputs": [[1]]}', {"inputs": 2})
    parser = arraybody._parsers[-1]
    held = parser.parse(b'{"inputs": [[1]]}')
    assert arraybody.read(b'{"inputs": [[2]]}', {"inputs": 2}) is None
    del held
    read = arraybody.read(b'{"inputs": [[2]]}', {"inputs": 2})
    assert read is not None and read["inputs"].tolist() == [[2.0]]


def test_bodies_over_the_capacity_go_the_general_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(arraybody, "CAPACITY", 4096)
    body = b'{"inputs": [' + b",".join([b"[0.123456789, 1, 0]"] * 300) + b"]}"
    assert len(body) > arraybody.CAPACITY
    assert arraybody.read(body, {"inputs": 2}) is None
    monkeypatch.setattr(arraybody, "CAPACITY", len(body))
    assert arraybody.read(body, {"inputs": 2}) is not None


def test_big_bodies_get_a_parser_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """A parser keeps the buffers of the biggest body it read: those are not pooled."""
    monkeypatch.setattr(arraybody, "_KEEP", 1024)
    monkeypatch.setattr(arraybody, "_parsers", [])
    rows = np.random.default_rng(1).random((200, 3))
    big = json.dumps({"inputs": rows.tolist()}).encode()
    assert len(big) > arraybody._KEEP
    read = arraybody.read(big, {"inputs": 2})
    assert read is not None and np.array_equal(read["inputs"], rows)
    assert arraybody._parsers == []
    small = json.dumps({"inputs": rows[:10].tolist()}).encode()
    assert arraybody._SMALL < len(small) <= arraybody._KEEP
    assert arraybody.read(small, {"inputs": 2}) is not None
    assert len(arraybody._parsers) == 1


# -- properties --------------------------------------------------------------------------------

_digits = st.text("0123456789", min_size=1, max_size=25)
_valid_numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(2**70), 2**70).map(str),
    st.from_regex(r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
)
_near_numbers = st.one_of(
    st.from_regex(r"[+-]?[0-9]{0,3}\.?[0-9]{0,3}([eE][+-]?[0-9]{0,4})?", fullmatch=True),
    st.sampled_from(
        ["NaN", "Infinity", "-Infinity", "true", "false", "null", '"1"', "0x1", "1e999", "[]"]
    ),
    _digits.map(lambda d: "0" + d),
)
_space = st.sampled_from(["", "", "", " ", "\n", "\t", "\r\n", "\x0c", "\x0b", "\xa0", "  "])
_keys = st.sampled_from(["inputs"] * 6 + ["targets", "in1puts", "Inputs", "input", "x", ""])


@st.composite
def bodies(draw: st.DrawFn, near: bool) -> bytes:
    """Objects of arrays of rows, mostly as clients write them, some one defect away."""
    numbers = st.one_of(_valid_numbers, _near_numbers) if near else _valid_numbers
    width = draw(st.integers(0, 4))
    row_count = draw(st.integers(0, 5))
    rows = []
    for _ in range(row_count):
        row_width = draw(st.sampled_from([width] * 5 + [width + 1, max(width - 1, 0)]))
        values = [draw(numbers) for _ in range(row_width)]
        rows.append("[" + ("," + draw(_space)).join(values) + "]")
    inputs = "[" + ("," + draw(_space)).join(rows) + "]"
    if draw(st.booleans()):
        inputs = "[" + ",".join(rows) + "]"
    fields = [(draw(_keys) if near else "inputs", inputs)]
    if near and draw(st.integers(0, 4)) == 0:
        fields.append((draw(_keys), draw(st.sampled_from([inputs, "[1]", "1", '"x"']))))
    s = draw(_space)
    text = "{" + s + ",".join(f'"{k}"{s}:{s}{v}' for k, v in fields) + s + "}"
    return text.encode()


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies(near=False))
@example(b'{"inputs": [[1e-400, -1e-400, 2.4703282292062328e-324]]}')
@example(b'{"inputs": [[9007199254740993, -9223372036854775809, 0.1e1]]}')
def test_valid_bodies_read_the_same_either_way(body: bytes) -> None:
    check(PredictRequest, body)


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies(near=True))
def test_near_valid_bodies_are_declined_or_read_the_same(body: bytes) -> None:
    check(PredictRequest, body)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies(near=False), st.lists(st.sampled_from(["0", "1", "0.5", "1e-3", "2"]), max_size=6))
def test_evaluate_bodies_are_declined_or_read_the_same(body: bytes, targets: list[str]) -> None:
    with_targets = body[:-1] + b', "targets": [' + ",".join(targets).encode() + b"]}"
    check(EvaluateRequest, with_targets)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64).map(lambda junk: b'{"inputs": [[' + junk + b"]]}"))
def test_any_bytes_in_a_row_are_declined_or_read_the_same(body: bytes) -> None:
    check(PredictRequest, body)


def test_the_properties_reach_both_outcomes() -> None:
    """The generators are not vacuous: they make bodies the fast path takes and declines."""
    outcomes: dict[bool, int] = {True: 0, False: 0}

    @settings(max_examples=400, deadline=None, database=None, derandomize=True)
    @given(st.booleans().flatmap(lambda near: bodies(near=near)))
    def run(body: bytes) -> None:
        outcomes[from_array_body(PredictRequest, body, MAX_ROWS) is not None] += 1

    run()
    assert outcomes[True] > 25 and outcomes[False] > 25, outcomes


# -- the service's answers ---------------------------------------------------------------------


def _answers(client: FlaskClient, cases: list[tuple[str, bytes, dict[str, str]]]) -> list[Any]:
    out = []
    for path, body, headers in cases:
        response = client.post(path, data=body, headers=headers)
        out.append((path, response.status_code, response.get_json()))
    return out


def test_the_service_answers_the_hostile_table_as_without_the_fast_path(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Status and body of every /predict and /evaluate case of the hostile-input table, and of
    the declined examples here, are the same with the fast path and with the general reader
    alone (the service as it was before the fast path)."""
    cases = [
        (path, body or b"", headers)
        for _, path, body, headers, _, _ in HOSTILE
        if path in ("/predict", "/evaluate")
    ]
    cases += [("/predict", body, {"Content-Type": "application/json"}) for body in ACCEPTED]
    cases += [
        ("/predict", body, {"Content-Type": "application/json"}) for body in DECLINED.values()
    ]
    cases += [("/evaluate", body, {"Content-Type": "application/json"}) for body in EVALUATE]
    taken = []
    real = web.array_fields
    for module in (web, api):  # /evaluate reads through web's from_array_body, /predict api's
        monkeypatch.setattr(module, "array_fields", lambda *a: taken.append(real(*a)) or taken[-1])
    with_fast_path = _answers(client, cases)
    for module in (web, api):
        monkeypatch.setattr(module, "array_fields", lambda *a: None)
    assert _answers(client, cases) == with_fast_path
    assert sum(t is not None for t in taken) >= len(ACCEPTED) + 4  # the fast path was taken
