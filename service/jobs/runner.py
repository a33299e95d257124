"""JobRunner: the training process's loop — claim a job, read its body, train, report.

It runs in a process of its own beside the HTTP workers (service/server/trainer.py hosts it
in gunicorn's dirty arbiter), so a job's CPU and memory never sit in a serving worker.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from .. import metrics
from ..drift.window import alive
from ..errors import MalformedRequest, ServiceError, ValidationFailed
from ..model.tabular import read_csv
from ..schemas import RetrainRequest, retrain_settings, validation_details
from ..serving import ModelServer
from .job import READING_SHARE, Job, now
from .service import CSV, Jobs
from .spool import BODY_SUFFIX, body_path, open_body

log = logging.getLogger("neuron.jobs")

POLL_SECONDS = 0.5
STRAY_SECONDS = 60.0  # a body with no job this old is a leftover (a POST spools, then adds)
BEAT_SECONDS = 2.0
REPORT_SECONDS = 0.5  # progress written (and a cancel noticed) at most this often
SAVING = 0.999  # the fraction while the model is saved: done only once it is


# BaseException, as GeneratorExit is: they stop the work, they are not its failure, and the
# retrain path's "except Exception" (which counts failed retrains) must let them through.
class Cancelled(BaseException):
    """DELETE /admin/jobs/{id} asked for it."""


class Interrupted(BaseException):
    """The training process is shutting down: the job goes back to the queue."""


class JobRunner:
    """Runs this host's jobs one at a time (one per store: Board.training_slot)."""

    def __init__(self, jobs: Jobs, server: ModelServer) -> None:
        self.jobs, self.server, self.board = jobs, server, jobs.board
        self.pid = os.getpid()
        self.stop = threading.Event()

    def serve(self) -> None:
        """Until stop is set: reap dead jobs, run the next one, else wait a little."""
        self._beat_once()  # before reaping: this host's queued jobs waited for it, not on it
        threading.Thread(target=self._beat, name="job-heartbeat", daemon=True).start()
        while not self.stop.is_set():
            try:
                self.reap()
                ran = self.run_next()
            except Exception:  # the store may be down: try again, never die
                log.exception("the job loop failed; trying again")
                ran = False
            if not ran:
                self.stop.wait(POLL_SECONDS)

    def run_next(self) -> bool:
        """Run the oldest queued job of this host, if no job trains anywhere in the store."""
        with self.board.training_slot() as held:
            if not held:
                return False
            job = self._claim()
            if job is None:
                return False
            self._run(job)
            return True

    def reap(self) -> None:
        """Fail jobs whose training process is gone: dead here, or silent anywhere; prune."""
        listed = self.board.recent(10_000)  # read once per poll: reaping and pruning share it
        for job in listed:
            if not job.ended:
                reason = self._dead(job)
                if reason:
                    self.board.update(job.id, partial(_failed, reason=reason))
                    metrics.TRAINING_JOBS_TOTAL.labels("failed").inc()
                    log.error("job %s failed: %s", job.id, reason)
        self._prune(listed)

    def _dead(self, job: Job) -> str | None:
        mine = job.node == self.jobs.node
        orphan = mine and job.state == "running" and job.runner != self.pid
        if orphan and (job.runner is None or not alive(job.runner)):
            return (
                f"the training process (pid {job.runner}) ended while it ran this job: "
                "killed, or out of memory"
            )
        silent = time.time() - job.heartbeat_at
        if silent > self.jobs.settings.job_heartbeat_timeout_seconds:
            return (
                f"the training process of host {job.node} has not been heard of for "
                f"{silent:.0f} s: it (or its replica) stopped"
            )
        lost = mine and job.state == "queued"
        if lost and not body_path(self.jobs.directory, job.id).exists():
            return "the job's body is no longer on disk"
        return None

    def _claim(self) -> Job | None:
        queued = [j for j in self.board.recent(10_000) if j.state == "queued"]
        for job in sorted(queued, key=lambda j: j.created_at):
            if job.node != self.jobs.node:
                continue
            claimed = self.board.update(job.id, self._start)
            if claimed is not None and claimed.state == "running" and claimed.runner == self.pid:
                return claimed
        return None

    def _start(self, job: Job) -> Job | None:
        if job.state != "queued":
            return None
        return job.moved(
            state="running",
            runner=self.pid,
            started_at=now(),
            heartbeat_at=time.time(),
            progress={"fraction": 0.0, "phase": "reading"},
        )

    def _run(self, job: Job) -> None:
        started = time.monotonic()
        reporter = _Reporter(self, job)
        try:
            request = self._read(job, reporter)
            answer = self.server.train_job(request, reporter.training, reporter.check)
        except Cancelled:
            self._end(job, "cancelled", started, {})
        except Interrupted:
            log.info("job %s interrupted by shutdown: queued again", job.id)
            self.board.update(job.id, _requeued)
            return
        except ServiceError as exc:
            self._end(job, "failed", started, {"error": exc.envelope()})
        except Exception as exc:
            log.exception("job %s failed", job.id)
            internal = ServiceError(f"training failed: {type(exc).__name__}: {exc}")
            self._end(job, "failed", started, {"error": internal.envelope()})
        else:
            result = orjson.loads(orjson.dumps(answer.model_dump(mode="json")))
            self._end(job, "succeeded", started, {"result": result})

    def _read(self, job: Job, reporter: _Reporter) -> RetrainRequest:
        path = body_path(self.jobs.directory, job.id)
        limits = self.jobs.settings
        with open_body(
            path, job.content_encoding, limits.max_job_body_bytes, reporter.reading
        ) as body:
            if job.content_type == CSV:
                settings = retrain_settings(job.query)
                table = read_csv(
                    body, job.query.get("target", [None])[0], limits.max_job_rows, limits.max_inputs
                )
                request = settings.model_copy(
                    update={
                        "inputs": table.inputs,
                        "targets": table.targets,
                        "feature_names": table.feature_names,
                    }
                )
            else:
                request = _json_request(body.read())
        reporter.read(0 if request.inputs is None else len(request.inputs))
        return request

    def _end(self, job: Job, state: str, started: float, fields: dict[str, Any]) -> None:
        seconds = time.monotonic() - started
        metrics.TRAINING_JOBS_TOTAL.labels(state).inc()
        metrics.TRAINING_JOB_DURATION_SECONDS.labels(state).observe(seconds)

        def ended(current: Job) -> Job:
            done = current.progress
            if state == "succeeded":
                done = done.model_copy(update={"fraction": 1.0, "phase": "done"})
            return current.moved(
                state=state, finished_at=now(), progress=done, runner=None, **fields
            )

        self.board.update(job.id, ended)
        body_path(self.jobs.directory, job.id).unlink(missing_ok=True)
        log.info("job %s %s after %.1f s", job.id, state, seconds)

    def _beat(self) -> None:
        """Say this host's training process lives, for its queued and running jobs."""
        while not self.stop.wait(BEAT_SECONDS):
            try:
                self._beat_once()
            except Exception as exc:
                log.warning("job heartbeat failed: %s", exc)

    def _beat_once(self) -> None:
        for job in self.board.recent(self.jobs.settings.keep_jobs * 2):
            if not job.ended and job.node == self.jobs.node:
                self.board.update(job.id, _heard)

    def _prune(self, listed: list[Job]) -> None:
        """Forget the oldest ended jobs; delete bodies whose job ended (a cancel on another
        replica cannot reach this disk) or never came to be."""
        jobs = {job.id: job for job in listed}
        ended = [job for job in jobs.values() if job.ended]
        for job in ended[self.jobs.settings.keep_jobs :]:
            self.board.remove(job.id)
        for path in self.jobs.directory.glob(f"*{BODY_SUFFIX}"):
            owner = jobs.get(path.name.removesuffix(BODY_SUFFIX))
            stray = owner is None and time.time() - _mtime(path) > STRAY_SECONDS
            if stray or (owner is not None and owner.ended):
                path.unlink(missing_ok=True)


class _Reporter:
    """Writes a running job's progress at most every REPORT_SECONDS; hears cancel and stop."""

    def __init__(self, runner: JobRunner, job: Job) -> None:
        self.runner, self.job, self.size = runner, job, max(job.body_bytes, 1)
        self.last = 0.0
        self.rows: int | None = None

    def reading(self, consumed: int) -> None:
        self._report(READING_SHARE * min(consumed / self.size, 1.0), "reading")

    def read(self, rows: int) -> None:
        self.rows = rows
        self._report(READING_SHARE, "training", force=True)

    def training(self, fraction: float) -> None:
        self._report(READING_SHARE + (1 - READING_SHARE) * fraction, "training")

    def check(self) -> None:
        """Before the model is saved: a cancel that came in time keeps it from serving."""
        self._report(SAVING, "saving", force=True)

    def _report(self, fraction: float, phase: str, force: bool = False) -> None:
        if self.runner.stop.is_set():
            raise Interrupted
        # A worker woken by a request may otherwise wait out the trainer's time slice (EEVDF
        # lets the running task reach its slice): a few ms on a predictions' p99, measured.
        os.sched_yield()
        moment = time.monotonic()
        if not force and moment - self.last < REPORT_SECONDS:
            return
        self.last = moment
        progress = {"fraction": round(fraction, 4), "phase": phase, "rows": self.rows}
        job = self.runner.board.update(
            self.job.id, lambda j: j.moved(progress=progress, heartbeat_at=time.time())
        )
        if job is None or job.cancel_requested:
            raise Cancelled


def _json_request(body: bytes) -> RetrainRequest:
    try:
        payload = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ValidationFailed(
            "the body must be a JSON object", [{"loc": [], "msg": "expected an object"}]
        )
    try:
        return RetrainRequest.model_validate(payload, context={"numbers_only": False})
    except ValidationError as exc:
        raise ValidationFailed("the request is invalid", validation_details(exc)) from None


def _failed(job: Job, reason: str) -> Job | None:
    if job.ended:
        return None
    error = ServiceError(reason).envelope()
    return job.moved(state="failed", finished_at=now(), runner=None, error=error)


def _requeued(job: Job) -> Job:
    return job.moved(
        state="queued", runner=None, started_at=None, progress={"fraction": 0.0, "phase": "queued"}
    )


def _heard(job: Job) -> Job | None:
    return None if job.ended else job.moved(heartbeat_at=time.time())


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return time.time()
