"""The connection board the gthread workers share (service/server/fairworker.py), without gunicorn."""

from __future__ import annotations

import os
import time
import warnings
from types import SimpleNamespace

import pytest

from service.server import fairworker
from service.server.fairworker import ConnectionBoard


def test_slots_go_to_the_first_free_one_and_come_back() -> None:
    board = ConnectionBoard(slots=3)
    a, b, c = SimpleNamespace(), SimpleNamespace(), SimpleNamespace()
    board.assign(a, [])
    board.assign(b, [a])
    assert (a.board_slot, b.board_slot) == (0, 1)
    board.assign(c, [b])  # a is gone: its slot is free again
    assert c.board_slot == 0
    full = SimpleNamespace()
    board.assign(full, [a, b, SimpleNamespace(board_slot=2)])
    assert full.board_slot is None  # no slot: the worker behaves as plain gthread


def test_only_live_serving_siblings_count() -> None:
    board = ConnectionBoard(slots=4)
    assert board.fewest_elsewhere(0) is None  # alone
    board.beat(0, 9)
    board.beat(1, 5)
    board.beat(2, 3)
    assert board.fewest_elsewhere(0) == 3
    assert board.fewest_elsewhere(2) == 5
    board.leave(2)  # stopping or reaped
    assert board.fewest_elsewhere(0) == 5
    board.leave(None)  # a worker without a slot: nothing to do
    assert board.fewest_elsewhere(0) == 5


def test_a_sibling_whose_loop_stopped_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    board = ConnectionBoard(slots=2)
    board.beat(1, 0)
    now = time.monotonic()
    monkeypatch.setattr(fairworker.time, "monotonic", lambda: now + fairworker.STALE_SECONDS + 0.1)
    assert board.fewest_elsewhere(0) is None


def test_the_board_is_shared_with_a_forked_child() -> None:
    board = ConnectionBoard(slots=2)
    with warnings.catch_warnings():  # 3.12+ warns if another test left a thread; the child
        warnings.simplefilter("ignore", DeprecationWarning)  # takes no lock, it only writes
        pid = os.fork()
    if pid == 0:  # the child writes its slot, as a worker does
        board.beat(1, 7)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert board.fewest_elsewhere(0) == 7
