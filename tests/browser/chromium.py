"""Debian's chromium for the browser tests: installed with apt-get when absent and we are root.

Playwright drives this binary; its own browser download (`playwright install`) is never used.
Run alone (`make chromium`) or from the browser tests' session fixture.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# The browser makes no request of its own: no component updates, sync, QUIC or first-run pages,
# and none through a proxy from the environment (a request the page makes goes out directly,
# where the tests see it).
FLAGS = (
    "--headless",
    "--no-proxy-server",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
_APT = ("apt-get", "-o", "DPkg::Lock::Timeout=600")  # wait for another apt run, not fail
_APT_TIMEOUT = 1800


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        [*_APT, *args], env=env, capture_output=True, text=True, timeout=_APT_TIMEOUT, check=False
    )


def ensure() -> str | None:
    """None once /usr/bin/chromium is there; otherwise why it is not."""
    if os.access(CHROMIUM, os.X_OK):
        return None
    if os.geteuid() != 0:
        return f"{CHROMIUM} is missing and we are not root: run `apt-get install -y chromium`"
    if shutil.which("apt-get") is None:
        return f"{CHROMIUM} is missing and this machine has no apt-get"
    result = _apt("install", "-y", "chromium")
    if result.returncode != 0:  # e.g. no package lists yet on a fresh machine
        _apt("update")
        result = _apt("install", "-y", "chromium")
    if os.access(CHROMIUM, os.X_OK):
        return None
    return f"apt-get install -y chromium failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"


if __name__ == "__main__":
    problem = ensure()
    print(problem or f"{CHROMIUM} is installed", file=sys.stderr if problem else sys.stdout)
    sys.exit(1 if problem else 0)
