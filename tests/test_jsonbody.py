"""service.http.jsonbody against the standard library's json with an object_pairs_hook."""

from __future__ import annotations

import contextlib
import gc
import json
import math
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.errors import MalformedRequest
from service.http.jsonbody import MAX_KEYS, JsonBody, decode


class Repeated(Exception):
    pass


def _reference_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    for index, key in enumerate(keys):
        if key in keys[:index]:
            raise Repeated(key)
    return dict(pairs)


def reference(body: bytes) -> Any:
    """The payload, or Repeated(first repeated key): slow and obviously right."""
    return json.loads(body, object_pairs_hook=_reference_hook)


def all_numbers(value: Any) -> bool:
    if isinstance(value, dict):
        return all(all_numbers(v) for v in value.values())
    if isinstance(value, list):
        return all(all_numbers(v) for v in value)
    return type(value) in (int, float)


# JSON text built by hand so that objects may repeat keys and strings may hold escapes.
_keys = st.sampled_from(["a", "b", "inputs", 'q"uote', "null", "true", "é", "\\"]) | st.text(
    max_size=4
)
_scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["true", "false", "null", "-0", "1e5", "2.5E-3"]),
    st.text(max_size=6).map(lambda s: json.dumps(s, ensure_ascii=False)),
    st.text(max_size=6).map(json.dumps),  # \\uXXXX escapes
)


def _array(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def _object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{json.dumps(k)} : {v}" for k, v in pairs) + "}"


_texts = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=5).map(_array)
        | st.lists(st.tuples(_keys, inner), max_size=5).map(_object)
    ),
    max_leaves=30,
)
_rows = st.lists(
    st.lists(st.integers(-5, 5) | st.floats(-1, 1), min_size=1, max_size=4), min_size=1
).map(lambda rows: json.dumps({"inputs": rows}))


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_texts, _rows))
def test_agrees_with_the_reference(text: str) -> None:
    check_against_reference(text.encode())
    check_against_reference(text.encode() + b" " * 600)  # long bodies take other scans


def check_against_reference(body: bytes) -> None:
    try:
        expected = reference(body)
    except Repeated as repeated:
        with pytest.raises(MalformedRequest) as caught:
            decode(body)
        assert caught.value.message == f"the body repeats the key {repeated.args[0]!r}"
        return
    decoded = decode(body)
    assert decoded.payload == expected
    if decoded.numbers_only:  # the fast path of the matrix check relies on this
        assert all_numbers(expected)
    assert isinstance(decoded, JsonBody)


@pytest.mark.parametrize(
    ("text", "numbers_only"),
    [
        ('{"inputs": [[1, 0, 0]]}', True),
        ('{"inputs": [[1.5e-3, -2]], "targets": [1]}', True),
        ('{"inputs": [[1, true, 0]]}', False),
        ('{"inputs": [[1, false, 0]]}', False),
        ('{"inputs": [[1, null, 0]]}', False),
        ('{"inputs": [[1, "1", 0]]}', False),
        ('{"inputs": [[1, 0]], "id": "x"}', False),
        ('{"a\\"b": [[1]]}', False),  # conservative: an escaped quote in a key
    ],
)
def test_numbers_only(text: str, numbers_only: bool) -> None:
    assert decode(text.encode()).numbers_only is numbers_only
    assert decode(text.encode() + b" " * 600).numbers_only is numbers_only


@pytest.mark.parametrize("n", [1, 31, 32, 33, 200])
def test_many_keys_and_letters_in_a_long_body(n: int) -> None:
    """Past 32 quote marks or t/f/n bytes the scans change method; the answers do not."""
    keys = ",".join(f'"tfn{i}": [[{i}]]' for i in range(n))
    assert decode(f"{{{keys}}}".encode() + b" " * 600).payload["tfn0"] == [[0]]
    with pytest.raises(MalformedRequest, match="'tfn0'"):
        decode(f'{{{keys}, "tfn0": 1}}'.encode() + b" " * 600)
    body = decode(f'{{{keys}, "z": [1, null]}}'.encode() + b" " * 600)
    assert body.numbers_only is False


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('{"a": 1, "a": 2}', "a"),
        ('{"inputs": [[1]], "x": {"b": 1, "c": 2, "b": 3}}', "b"),
        ('[{"k": 1}, {"k": 1, "k": 1}]', "k"),
        ('{"s": "\\"", "s": 1}', "s"),  # an escaped quote as well as the repeat
        ('{"a": 1, "\\u0061": 2}', "a"),  # the same key, spelt two ways
        ('{"a": {"x": 1, "x": 2}, "a": 3}', "x"),  # innermost object first, like json's hook
    ],
)
def test_repeated_keys_are_named(text: str, key: str) -> None:
    with pytest.raises(MalformedRequest, match=f"repeats the key {key!r}"):
        decode(text.encode())


@pytest.mark.parametrize("text", ["", "{", "[1,]", "NaN", '{"a": Infinity}', "[1e400]", "\xff"])
def test_not_json_is_malformed(text: str) -> None:
    with pytest.raises(MalformedRequest, match="not valid JSON"):
        decode(text.encode("latin-1"))


@pytest.mark.parametrize("number", [b"9" * 300, b"0." + b"3" * 100_000, b"-1" + b"0" * 300])
def test_long_numbers_next_to_an_escape(number: bytes) -> None:
    """The exact check runs on these; long numbers must neither fail it nor slow it down."""
    decoded = decode(b'{"s": "\\"", "n": ' + number + b"}")
    assert decoded.payload == {"s": '"', "n": float(number)}


def test_deep_nesting_is_read_alike_on_every_python() -> None:
    """orjson takes 1,024 levels; the exact check (json) must too, on 3.11 as on 3.13."""
    depth = 1020
    body = b'{"s": "\\"", "d": ' + b"[" * depth + b"]" * depth + b"}"
    assert decode(body).payload["s"] == '"'
    with pytest.raises(MalformedRequest, match="repeats the key 's'"):
        decode(body[:-1] + b', "s": 1}')


def _seconds(body: bytes) -> float:
    best = math.inf
    for _ in range(5):
        started = time.process_time()
        with contextlib.suppress(MalformedRequest):
            decode(body)
        best = min(best, time.process_time() - started)
    return best


@pytest.mark.parametrize(
    ("make", "small"),
    [
        # n distinct keys, then the first again: quadratic in the old keys.count loop
        (lambda n: ("{" + ",".join(f'"k{i}":1' for i in range(n)) + ',"k0":1}').encode(), 2_499),
        (lambda n: ("{" + ",".join('"k":1' for _ in range(n)) + "}").encode(), 2_500),
        (lambda n: ('{"s":"' + '\\"' * n + '"}').encode(), 50_000),
    ],
    ids=["distinct-keys-and-a-repeat", "one-key-repeated", "escaped-quotes"],
)
def test_cost_is_linear(make: Any, small: int) -> None:
    """Four times the size, about four times the time (the old check took sixteen).

    The ceiling is 10, not 6: orjson's own cost per key grows with the object's size (cache
    misses), and a fresh CI run measured 6.2 on 2,499 -> 9,996 keys; quadratic would be 16.
    """
    small_s, large_s = _seconds(make(small)), _seconds(make(4 * small))
    assert large_s < 0.2
    assert large_s / max(small_s, 1e-3) < 10, (small_s, large_s)


def test_too_many_keys_are_refused_before_parsing() -> None:
    at_limit = ("{" + ",".join(f'"k{i}":1' for i in range(MAX_KEYS)) + "}").encode()
    assert len(decode(at_limit).payload) == MAX_KEYS
    over = at_limit[:-1] + b',"x":1}'
    with pytest.raises(MalformedRequest, match=f"at most {MAX_KEYS}"):
        decode(over)
    huge = ("{" + ",".join(f'"k{i}":1' for i in range(400_000)) + "}").encode()
    started = time.process_time()
    with pytest.raises(MalformedRequest, match="':' characters"):  # not parsed: cheap
        decode(huge)
    assert time.process_time() - started < 0.05


def test_the_cycle_collector_is_left_as_it_was() -> None:
    """Large bodies are parsed with the collector paused; it comes back, even after an error."""
    large, broken = b"[" + b"[1]," * 1000 + b"[1]]", b"[" + b"[1]," * 1000
    assert gc.isenabled()
    assert len(decode(large).payload) == 1001
    with pytest.raises(MalformedRequest):
        decode(broken)
    assert gc.isenabled()
    gc.disable()
    try:
        decode(large)
        assert not gc.isenabled()
    finally:
        gc.enable()
