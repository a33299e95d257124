"""Training jobs: data of any size trained beside the serving path, with progress and cancel.

job.py is one job's state; board.py and pgboard.py keep jobs (directory or PostgreSQL);
spool.py puts bodies on disk and reads them back; service.py is what HTTP asks (Jobs);
runner.py is the training process's loop (JobRunner). Imports serving and below.
"""

from __future__ import annotations

from .job import ENDED, Job
from .runner import JobRunner
from .service import Jobs

__all__ = ["ENDED", "Job", "JobRunner", "Jobs"]
