"""A JSON body of number arrays read straight into float64 arrays, or None: read it the usual way.

The common body, ``{"inputs": [[1, 0, 0], ...]}``, costs a big batch most of its time when read
as Python objects: 10,000 rows are 30,000 floats and 10,000 lists, then copied into numpy.
Here the body's bytes prove its layout and simdjson parses it in C, copying the numbers
straight into one float64 buffer: no Python object per number.

The proof is one pass: the body with every number character and JSON whitespace deleted (its
skeleton) must be exactly ``{"inputs":[[,,],[,,],...]}`` - the expected keys (spelled without
number characters), each holding rows of one width, or a flat list - and simdjson must then
read it as JSON, every number a finite double. A string, true, false, null, another key, a
ragged row, a number simdjson will not read (1e999, an integer past 64 bits): anything else
gives None, and the caller reads the body with jsonbody and pydantic, which answer every error.
This module never refuses a body; it only declines one.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import numpy as np
import orjson
import simdjson
from numpy.typing import NDArray

Float64Array = NDArray[np.float64]

# Bodies over this go the general way. A parser keeps buffers of about 5 times the largest
# document it read (measured RSS): only parsers that read at most _KEEP bytes are pooled; a
# bigger body gets a parser of its own, freed after it. 10,000 rows of 3 full-precision floats
# are about 650 kB.
CAPACITY = 16 << 20
_KEEP = 1 << 20
_SMALL = 512  # bytes: below this, orjson and np.array beat simdjson's per-call cost (~3 us)
_POOL = 2  # parsers kept; threads hold the GIL while parsing, so more are rarely needed
_NUMBER_AND_SPACE = b"0123456789.eE+- \t\n\r"
_KEY_VALUE = re.compile(rb"[ \t\n\r]*:[ \t\n\r]*\[")
_parsers: list[simdjson.Parser] = []


def cut_array(body: bytes, key: str) -> tuple[bytes, Float64Array] | None:
    """(the body with the flat number list under ``key`` emptied to [], that list), or None.

    For a body with one big list among other fields (a V2 tensor's "data"): the rest, small,
    can go to the general reader. Only a body that names ``key`` once is cut.
    """
    quoted = b'"' + key.encode() + b'"'
    at = body.find(quoted)
    if at < 0 or body.find(quoted, at + 1) >= 0:
        return None
    value = _KEY_VALUE.match(body, at + len(quoted))
    if value is None:
        return None
    start = value.end() - 1
    end = body.find(b"]", start) + 1  # a list of numbers holds no "]" of its own
    arrays = read(b'{"a":' + body[start:end] + b"}", {"a": 1}) if end else None
    if arrays is None:
        return None
    return body[:start] + b"[]" + body[end:], arrays["a"]


def skeleton_name(name: str) -> bytes:
    """A key as it reads in a skeleton: its number characters deleted ("targets": b"targts")."""
    return name.encode().translate(None, _NUMBER_AND_SPACE)


def read(body: bytes, fields: dict[str, int]) -> dict[str, Float64Array] | None:
    """The body as ``{name: array}`` if it is exactly an object of those fields, else None.

    ``fields`` maps each key the body must hold (and no other) to its arrays' dimensions:
    2 for rows of numbers, all of one width (a (rows, width) array), 1 for a flat list.
    """
    if len(body) > CAPACITY:
        return None
    skeleton = body.translate(None, _NUMBER_AND_SPACE)
    if len(skeleton) <= _SMALL:
        shapes = _small_layout(skeleton, tuple(fields.items()))
    else:
        shapes = _layout(skeleton, fields)
    if shapes is None:
        return None
    if len(body) <= _SMALL:
        return _parse_small(body, shapes)
    keep = len(body) <= _KEEP
    try:
        parser = _parsers.pop() if keep else simdjson.Parser(max_capacity=len(body))
    except IndexError:  # pop() is atomic under the GIL: each thread gets its own parser
        parser = simdjson.Parser(max_capacity=_KEEP)
    try:
        arrays = _parse(parser, body, shapes)
    except RuntimeError:  # a proxy into its last document still lives: drop this parser
        return None
    if keep and len(_parsers) < _POOL:
        _parsers.append(parser)
    return arrays


def _parse_small(body: bytes, shapes: dict[str, tuple[int, ...]]) -> dict[str, Float64Array] | None:
    """orjson's reading of a small body: for a few numbers, faster than simdjson's proxies."""
    try:
        payload = orjson.loads(body)
        arrays = {name: np.array(payload[name], np.float64) for name in shapes}
    except (ValueError, KeyError):  # invalid JSON (JSONDecodeError), [[1], []] ("[[],[]]")
        return None
    # No finiteness check: orjson reads no NaN or Infinity, and refuses a number past a double.
    if any(array.shape != shapes[name] for name, array in arrays.items()):
        return None
    return arrays


def _parse(
    parser: simdjson.Parser, body: bytes, shapes: dict[str, tuple[int, ...]]
) -> dict[str, Float64Array] | None:
    """simdjson's reading of the fields, as float64 arrays of the proven shapes; or None.

    RuntimeError when the parser is still in use, or (simdjson's BIGINT_ERROR) for an integer
    past 64 bits.
    """
    arrays: dict[str, Float64Array] = {}
    try:
        document: Any = parser.parse(body)
        for name, shape in shapes.items():
            buffer = document[name].as_buffer(of_type="d")
            arrays[name] = np.frombuffer(buffer, np.float64).reshape(shape)
    except (ValueError, TypeError, KeyError):
        # Invalid JSON, a number out of range, a list shorter than its skeleton says ([] and
        # [5] both read "[]"), a key spelled with number characters ("in1puts" reads as
        # "inputs"): the general reader decides.
        return None
    finally:
        document = None  # no proxy may outlive this call: the parser is reused
    for array in arrays.values():
        if not np.isfinite(array).all():
            return None
    return arrays


@lru_cache(maxsize=256)
def _small_layout(
    skeleton: bytes, fields: tuple[tuple[str, int], ...]
) -> dict[str, tuple[int, ...]] | None:
    """_layout of a small skeleton, remembered: single rows and small batches repeat."""
    return _layout(skeleton, dict(fields))


def _layout(skeleton: bytes, fields: dict[str, int]) -> dict[str, tuple[int, ...]] | None:
    """Each field's shape if the skeleton is exactly an object of those fields, else None."""
    names = {skeleton_name(name): name for name in fields}
    if len(skeleton) < 2 or skeleton[0] != ord("{") or skeleton[-1] != ord("}"):
        return None
    shapes: dict[str, tuple[int, ...]] = {}
    at = 1
    while True:
        end = skeleton.find(b'":', at + 1)
        if skeleton[at] != ord('"') or end < 0:
            return None
        name = names.get(skeleton[at + 1 : end])
        if name is None or name in shapes:
            return None
        at = end + 2
        found = _array(skeleton, at, fields[name])
        if found is None:
            return None
        shapes[name], at = found
        if skeleton[at] == ord("}"):
            break
        if skeleton[at] != ord(","):
            return None
        at += 1
    if at != len(skeleton) - 1 or len(shapes) != len(fields):
        return None
    return shapes


def _array(skeleton: bytes, at: int, dims: int) -> tuple[tuple[int, ...], int] | None:
    """(shape, end) of the array skeleton at ``at``: non-empty rows of one width, or a flat list."""
    if dims == 1:
        end = skeleton.find(b"]", at) + 1
        width = end - at - 1  # the commas, plus one
        if end <= 0 or skeleton[at:end] != b"[" + b"," * (width - 1) + b"]":
            return None
        return (width,), end
    if not skeleton.startswith(b"[[", at):
        return None
    width = skeleton.find(b"]", at) - at - 1
    close = skeleton.find(b"]]", at)
    if width < 1 or close < 0:
        return None
    row = b"[" + b"," * (width - 1) + b"]"
    end = close + 2
    rows, extra = divmod(end - at - 1, len(row) + 1)
    if extra or skeleton[at:end] != b"[" + (row + b",") * (rows - 1) + row + b"]":
        return None
    return (rows, width), end
