"""The machine and the versions a results file was measured with."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

DISTRIBUTIONS = (
    "flask",
    "werkzeug",
    "gunicorn",
    "numpy",
    "orjson",
    "pydantic",
    "prometheus-client",
)
MLSERVER_PINS = (
    "mlserver==",
    "mlserver-sklearn==",
    "mlserver_sklearn==",
    "uvloop==",
    "scikit-learn==",
)
FASTAPI_PINS = (
    "fastapi==",
    "starlette==",
    "uvicorn==",
    "uvloop==",
    "httptools==",
    "pydantic==",
    "numpy==",
)


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def describe(mlserver_venv: Path, fastapi_venv: Path | None = None) -> dict[str, str]:
    info = {
        "date (UTC)": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "cpu": f"{_cpu()}, {os.cpu_count()} logical CPUs",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    for dist in DISTRIBUTIONS:
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[dist] = "?"
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    info["wrk"] = (wrk.stdout or wrk.stderr).split("Copyright")[0].strip()
    for key, venv, pins in (
        ("mlserver venv", mlserver_venv, MLSERVER_PINS),
        ("fastapi peer venv", fastapi_venv, FASTAPI_PINS),
    ):
        pip = venv / "bin" / "pip" if venv else None
        if pip and pip.exists():
            out = subprocess.run(
                [str(pip), "list", "--format=freeze"], capture_output=True, text=True, check=False
            ).stdout
            info[key] = ", ".join(x for x in out.split() if x.lower().startswith(pins))
    return info
