"""The training process: gunicorn's dirty arbiter runs it beside the HTTP workers.

gunicorn (25+) forks a "dirty arbiter" with a pool of dirty workers for long work: it
restarts a worker that dies, kills one whose heartbeat stops (dirty_timeout), and stops them
with the server. We run one dirty worker with this app; its init() starts the JobRunner's
loop in a thread and returns, so the worker's own heartbeat keeps going while a job trains.
Nothing calls into it over the arbiter's socket: jobs reach it through the store (Board).
"""

from __future__ import annotations

import logging
import os
import threading

from gunicorn.dirty import DirtyApp

from .. import logs
from ..jobs import JobRunner, Jobs
from ..serving import ModelServer
from ..settings import Settings

log = logging.getLogger("neuron.jobs")

NICENESS = 10  # training yields the CPU to the serving workers: predictions come first
STOP_SECONDS = 10.0  # what close() waits for a job to go back to the queue


class Trainer(DirtyApp):  # type: ignore[misc]
    """Hosts one JobRunner for the life of the dirty worker."""

    workers = 1

    def __init__(self) -> None:
        self.runner: JobRunner | None = None
        self.thread: threading.Thread | None = None

    def init(self) -> None:
        os.nice(NICENESS)
        settings = Settings()
        logs.configure(settings.log_level)
        server = ModelServer(settings)
        try:
            server.start()
        except Exception:  # the loop retries: a store down at start-up must not kill the pool
            log.exception("the training process found no model; jobs wait for one")
        self.runner = JobRunner(Jobs(settings, server.store), server)
        self.thread = threading.Thread(target=self.runner.serve, name="jobs", daemon=True)
        self.thread.start()
        log.info("training process ready (pid %d)", os.getpid())

    def __call__(self, action: str, *args: object, **kwargs: object) -> dict[str, int]:
        """Only "status": jobs arrive through the store, not through the arbiter."""
        return {"pid": os.getpid()}

    def close(self) -> None:
        """Shut down: a job in training goes back to the queue, to run again on restart."""
        if self.runner is not None and self.thread is not None:
            self.runner.stop.set()
            self.thread.join(STOP_SECONDS)
