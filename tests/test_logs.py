"""service.logs: one JSON object per line on stderr, on every supported Python."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator
from datetime import datetime

import orjson
import pytest

from service import logs


def lines(capfd: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    """The lines written to file descriptor 2 (where the handler's write(2) goes)."""
    return [orjson.loads(line) for line in capfd.readouterr().err.splitlines()]


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    root = logging.getLogger("neuron")
    before, level = list(root.handlers), root.level
    root.handlers[:] = []
    logs.configure("info")
    yield logging.getLogger("neuron.test")
    root.handlers[:] = before
    root.setLevel(level)


def test_a_record_becomes_one_json_line(
    logger: logging.Logger, capfd: pytest.CaptureFixture[str]
) -> None:
    logger.info("hello %s", "world", extra={"request_id": "abc"})
    logger.debug("not at info level")
    [line] = lines(capfd)
    assert line["msg"] == "hello world"
    assert line["request_id"] == "abc"
    assert line["level"] == "info"
    assert line["logger"] == "neuron.test"
    assert line["pid"] == os.getpid()


def test_an_exception_is_logged_with_its_traceback(
    logger: logging.Logger, capfd: pytest.CaptureFixture[str]
) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    [line] = lines(capfd)
    assert "ValueError: boom" in str(line["exc"])


def test_handle_works_on_this_python(capfd: pytest.CaptureFixture[str]) -> None:
    """Python 3.12+ runs `with self.lock:` in Handler.handle: a None lock crashed there."""
    handler = logs.LineHandler()
    handler.setFormatter(logs.JsonFormatter())
    record = logging.makeLogRecord({"name": "neuron.t", "msg": "x %d", "args": (1,)})
    assert handler.handle(record)
    with handler.lock:  # what logging itself does on 3.12+
        pass
    handler.acquire()  # and what logging.shutdown() does
    handler.flush()
    handler.release()
    [line] = lines(capfd)
    assert line["msg"] == "x 1"


def test_a_filter_drops_the_record(capfd: pytest.CaptureFixture[str]) -> None:
    handler = logs.LineHandler()
    handler.addFilter(lambda record: False)
    assert not handler.handle(logging.makeLogRecord({"msg": "dropped"}))
    assert lines(capfd) == []


def test_lines_from_many_threads_do_not_interleave(
    logger: logging.Logger, capfd: pytest.CaptureFixture[str]
) -> None:
    payload = "y" * 3000

    def spam(n: int) -> None:
        for i in range(50):
            logger.info("line", extra={"worker": n, "i": i, "payload": payload})

    threads = [threading.Thread(target=spam, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    got = {(line["worker"], line["i"]) for line in lines(capfd)}
    assert got == {(n, i) for n in range(4) for i in range(50)}


def test_configure_is_idempotent(logger: logging.Logger) -> None:
    logs.configure("info")
    handlers = logging.getLogger("neuron").handlers
    assert sum(isinstance(h, logs.LineHandler) for h in handlers) == 1


_FIELDS = {
    "request_id": "0123456789abcdef0123456789abcdef",
    "method": "POST",
    "path": "/predict",
    "endpoint": "/predict",
    "status": 200,
    "duration_ms": 0.215,
}


def only_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's own set-up: our handler alone (pytest adds its capture's as a test runs)."""
    root = logging.getLogger("neuron")
    sole = [h for h in root.handlers if isinstance(h, logs.LineHandler)]
    monkeypatch.setattr(root, "handlers", sole)


def test_info_lines_write_the_line_logging_writes(
    logger: logging.Logger, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same keys in the same order, same values; the timestamp differs only by the clock."""
    only_ours(monkeypatch)
    access = logging.getLogger("neuron.access")
    access.info("request", extra=_FIELDS)
    [reference] = capfd.readouterr().err.splitlines()
    # The direct path builds no LogRecord: with makeRecord broken, only it can write the line.
    monkeypatch.setattr(access, "makeRecord", lambda *a, **k: pytest.fail("built a record"))
    logs.InfoLines(access).info("request", _FIELDS)
    [direct] = capfd.readouterr().err.splitlines()
    want, got = orjson.loads(reference), orjson.loads(direct)
    assert list(got) == list(want)
    assert {**got, "ts": None} == {**want, "ts": None}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", str(got["ts"]))
    assert abs(_epoch(got["ts"]) - _epoch(want["ts"])) < 5


def _epoch(ts: object) -> float:
    return datetime.fromisoformat(str(ts)).timestamp()


def test_info_lines_honour_the_level(
    logger: logging.Logger, capfd: pytest.CaptureFixture[str]
) -> None:
    logging.getLogger("neuron").setLevel("WARNING")
    logs.InfoLines(logging.getLogger("neuron.access")).info("request", _FIELDS)
    assert lines(capfd) == []


def test_info_lines_give_a_filter_the_record(
    logger: logging.Logger, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    only_ours(monkeypatch)
    access = logging.getLogger("neuron.access")
    seen: list[logging.LogRecord] = []
    access.addFilter(lambda record: seen.append(record) or record.status != 200)  # type: ignore[attr-defined]
    try:
        logs.InfoLines(access).info("request", _FIELDS)
        logs.InfoLines(access).info("request", {**_FIELDS, "status": 404})
    finally:
        access.filters.clear()
    assert [r.status for r in seen] == [200, 404]  # type: ignore[attr-defined]
    assert [line["status"] for line in lines(capfd)] == [404]


def test_info_lines_reach_every_handler(
    logger: logging.Logger, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another handler anywhere on the way (a test's capture, a file) gets the record too."""
    only_ours(monkeypatch)
    records: list[logging.LogRecord] = []
    other = logging.Handler()
    other.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("neuron").addHandler(other)
    logs.InfoLines(logging.getLogger("neuron.access")).info("request", _FIELDS)
    assert [r.request_id for r in records] == [_FIELDS["request_id"]]  # type: ignore[attr-defined]
    [line] = lines(capfd)
    assert line["request_id"] == _FIELDS["request_id"]
