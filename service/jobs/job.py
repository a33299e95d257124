"""Job: one training job's state, as stored and as answered (GET /admin/jobs/{id})."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

State = Literal["queued", "running", "succeeded", "failed", "cancelled"]
Phase = Literal["queued", "reading", "training", "saving", "done"]
ENDED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
# Of the whole fraction, reading the body takes this share and training the rest.
READING_SHARE = 0.1


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def new_id() -> str:
    """128 random bits as hex: unguessable, and safe as a file name."""
    return secrets.token_hex(16)


def is_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


class Progress(BaseModel):
    fraction: float = Field(0.0, description="Share of the job done, from 0 to 1.")
    phase: Phase = Field("queued", description="What it is doing now.")
    rows: int | None = Field(None, description="Rows read from the body, once read.")


class JobInfo(BaseModel):
    """A training job as GET /admin/jobs/{id} answers it."""

    id: str
    state: State = Field("queued", description="queued, running, succeeded, failed, cancelled.")
    progress: Progress = Progress()
    result: dict[str, Any] | None = Field(
        None, description="Once succeeded: what POST /admin/retrain answers (RetrainResponse)."
    )
    error: dict[str, Any] | None = Field(
        None, description="Once failed: the error envelope a retrain would have answered."
    )
    cancel_requested: bool = False
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    content_type: str = Field(description="text/csv or application/json.")
    query: dict[str, list[str]] = Field(
        default_factory=dict, description="The training settings of a text/csv body."
    )
    body_bytes: int = Field(0, description="Size of the body as it was sent.")


class JobList(BaseModel):
    jobs: list[JobInfo] = Field(description="Recent jobs, newest first.")


class Job(JobInfo):
    """A job as stored: also where its body is, and who runs it."""

    content_encoding: str | None = None
    node: str = Field(description="host:directory of the job directory holding the body.")
    runner: int | None = None  # pid of the training process running it
    heartbeat_at: float = 0.0  # time.time() when its node's training process last said so

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    def public(self) -> JobInfo:
        return JobInfo.model_validate(self.model_dump(include=set(JobInfo.model_fields)))

    def moved(self, **changes: Any) -> Job:
        """A validated copy with ``changes``; Board.update stores it in place of this one."""
        return Job.model_validate({**self.model_dump(), **changes})
