"""Start-up: process start to the first /readyz 200, with a stored model and with none."""

from __future__ import annotations

import time
from pathlib import Path

from bench import configs


def startup(workdir: Path, reps: int) -> dict[str, list[float]]:
    """With the model the bench's services stored, and with an empty directory (it trains)."""
    times: dict[str, list[float]] = {"existing model": [], "no model (trains)": []}
    for rep in range(reps):
        for kind in times:
            model_dir = workdir / (
                "model" if kind == "existing model" else f"empty-{rep}-{time.time_ns()}"
            )
            config = configs.gunicorn(
                f"startup-{rep}", "service.wsgi:app", workdir, NEURON_MODEL_DIR=str(model_dir)
            )
            try:
                config.server.start()
                times[kind].append(config.server.ready_after)
            finally:
                config.server.stop()
    return times
