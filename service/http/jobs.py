"""Blueprint: training jobs under /admin/jobs, behind the admin token. Handlers translate."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from ..errors import NotFound, PayloadTooLarge
from ..jobs import Jobs
from ..jobs.job import JobList
from .admin import require_token
from .web import json_response

bp = Blueprint("jobs", __name__, url_prefix="/admin/jobs")
bp.before_request(require_token)


def jobs() -> Jobs:
    found: Jobs | None = current_app.extensions.get("neuron_jobs")
    if found is None:
        raise NotFound("training jobs are disabled (NEURON_JOBS_ENABLED=false)")
    return found


@bp.post("")
def submit() -> Response:
    """The body goes to disk as it arrives; 202 with the job and where to follow it."""
    board = jobs()
    limit = board.settings.max_job_body_bytes
    if (request.content_length or 0) > limit:
        raise PayloadTooLarge(f"the body is over the job limit of {limit} bytes")
    request.max_content_length = limit
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    job = board.submit(
        request.mimetype,
        request.mimetype_params.get("charset"),
        None if encoding in ("", "identity") else encoding,
        request.args.to_dict(flat=False),
        request.stream,
    )
    response = json_response(job.public(), 202)
    response.headers["Location"] = f"/admin/jobs/{job.id}"
    return response


@bp.get("")
def recent() -> Response:
    return json_response(JobList(jobs=[job.public() for job in jobs().recent()]))


@bp.get("/<job_id>")
def one(job_id: str) -> Response:
    return json_response(jobs().get(job_id).public())


@bp.delete("/<job_id>")
def cancel(job_id: str) -> Response:
    """202: a running job stops at its next progress report; GET tells when it has."""
    return json_response(jobs().cancel(job_id).public(), 202)
