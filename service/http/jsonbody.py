"""Reading a JSON request body: decode it, refuse repeated keys, say if it holds only numbers.

Every step is linear in the body's size, whatever its shape: a count of ':' refuses bodies of
more than MAX_KEYS keys; orjson decodes; a count of quote marks proves most bodies free of
repeated keys without a second parse; only a body the count cannot clear (an escaped quote, a
repeated key, rows mixing strings) is parsed again by the standard library with a set-based
check of each object's keys.
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import MalformedRequest

# No endpoint takes more than a few dozen keys. Tens of thousands are only an attack, and
# refused by a count of ':' before any parse: beyond a few MB, parsers' hash tables of keys
# fall out of the CPU caches and cost twice as much per key (measured: orjson and json alike).
MAX_KEYS = 10_000
_RECURSION_LIMIT = 1_024 + 1_000  # orjson's nesting limit, and the default limit's headroom
_WALK_DEPTH = 16  # request bodies are shallow; deeper parts are left to the exact check
_HOPS = 32  # memchr hops before a scan of the whole body is cheaper
_SMALL = 512  # bytes: below this, plain scans beat the hops' Python loop
_LITERALS = (b"true", b"false", b"null")


@dataclass(frozen=True, slots=True)
class JsonBody:
    """A decoded body and what its raw bytes say about it."""

    payload: Any
    # True only if every scalar in the body is a JSON number (no string value, true, false or
    # null): numpy would read True and "1" as 1.0, so without it the matrix check looks at
    # each value. False may be said of a body of numbers (e.g. a key spelled "null").
    numbers_only: bool


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def decode(body: bytes) -> JsonBody:
    """The body as JSON; MalformedRequest if it is not JSON, repeats a key or nests too deeply."""
    small = len(body) <= _SMALL
    colons = body.count(b":") if small else _count(body, b":")
    if colons > MAX_KEYS:
        raise MalformedRequest(
            f"the body holds {colons} ':' characters: at most {MAX_KEYS} are accepted "
            "(one per key, and any inside strings)"
        )
    try:
        if small:
            payload = orjson.loads(body)
        else:
            with _no_gc():
                payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}") from None
    quotes = body.count(b'"') if small else _count(body, b'"')
    keys, strings = _quotes(payload)
    if quotes != keys + strings:
        refuse_duplicate_keys(body)
    if quotes != keys:
        return JsonBody(payload, False)
    if small:
        return JsonBody(
            payload, b"true" not in body and b"false" not in body and b"null" not in body
        )
    return JsonBody(payload, _no_literals(body))


@contextmanager
def _no_gc() -> Iterator[None]:
    """The cycle collector paused while a parser builds a tree (a tree has no cycles).

    A 4 MiB body of small rows is a million lists: collections during the parse doubled its
    cost and made it grow faster than the body. Threads race only to the same end: the first
    to pause turns it back on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _count(body: bytes, byte: bytes) -> int:
    """body.count(byte), by memchr hops while there are few: 30 times faster on rows of numbers."""
    seen = 0
    at = body.find(byte)
    while at >= 0:
        seen += 1
        if seen > _HOPS:
            return body.count(byte)
        at = body.find(byte, at + 1)
    return seen


def _no_literals(body: bytes) -> bool:
    """No true, false or null in the body (said only when every quote mark belongs to a key).

    Each t, f or n byte is looked at (numbers hold none, keys a few): a search for the whole
    word costs a scan of the body per word, as much as decoding a body of numbers. Past a few
    such bytes the answer is a safe "maybe": False.
    """
    for word in _LITERALS:
        at = body.find(word[:1])
        for _ in range(_HOPS):
            if at < 0:
                break
            if body.startswith(word, at):
                return False
            at = body.find(word[:1], at + 1)
        else:
            return False
    return True


def _quotes(value: Any, depth: int = 0) -> tuple[int, int]:
    """Quote marks the decoded (keys, string values) account for; never more than the body holds.

    orjson keeps the last of repeated keys silently; a dropped key leaves its quotes in the
    body but not in the payload, so equal counts prove there was none. Rows of numbers and
    deep parts are not walked: that can only undercount, which sends the body to the exact
    check. Each value is visited at most once: linear.
    """
    if isinstance(value, str):
        return 0, 2
    keys = strings = 0
    if depth > _WALK_DEPTH:
        return keys, strings
    if isinstance(value, dict):
        keys = 2 * len(value)
        items: Any = value.values()
    elif isinstance(value, list) and value and not _numbers(value):
        items = value
    else:
        return keys, strings
    for item in items:
        kind = type(item)
        if kind is str:
            strings += 2
        elif kind is dict or kind is list:  # numbers, booleans and null hold no quote marks
            more_keys, more_strings = _quotes(item, depth + 1)
            keys += more_keys
            strings += more_strings
    return keys, strings


def _numbers(items: list[Any]) -> bool:
    """A list that starts with a number (or a row starting with one) is taken as numbers."""
    first = items[0]
    if isinstance(first, list) and first:
        first = first[0]
    return isinstance(first, int | float)


def _unique(pairs: list[tuple[str, Any]]) -> None:
    """object_pairs_hook: _DuplicateKey naming the object's first repeated key.

    Returns None: the second parse only looks for repeats and need not build the objects.
    """
    if len(dict(pairs)) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)


def refuse_duplicate_keys(body: bytes) -> None:
    """MalformedRequest naming the first repeated key (innermost object first), if any."""
    # Python 3.11's json counts each level against the recursion limit (1,000 by default), so
    # a body orjson took (at most 1,024 levels) was refused there and not on 3.12+. Raised
    # once, never lowered: no race between threads.
    if sys.getrecursionlimit() < _RECURSION_LIMIT:
        sys.setrecursionlimit(_RECURSION_LIMIT)
    try:
        with _no_gc():
            json.loads(body, object_pairs_hook=_unique)
    except _DuplicateKey as exc:
        raise MalformedRequest(f"the body repeats the key {exc.key!r}") from None
    except RecursionError:
        raise MalformedRequest("the body is nested too deeply") from None
