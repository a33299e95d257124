"""service.logs: one JSON object per line on stderr, on every supported Python."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator

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
