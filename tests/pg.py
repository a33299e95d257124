"""A real PostgreSQL cluster for the tests: initdb + pg_ctl in a temp dir on a free port.

PostgreSQL refuses to run as root, so as root the cluster runs as `nobody` (via setpriv) in a
directory it owns. The server binaries come from PATH or Debian's /usr/lib/postgresql/*/bin
(`make pytest` installs Debian's postgresql package when they are missing, see
deploy/scripts/test-packages.sh). The server is stopped by its postmaster's pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.integration.server import free_port

IN_CI = os.environ.get("CI") == "true"
UNPRIVILEGED = "nobody"


def server_bin() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres; None if PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    return debian[0].parent if debian else None


def require_server_bin() -> Path:
    directory = server_bin()
    if directory is None:
        reason = "PostgreSQL server binaries missing (make pytest installs Debian's postgresql)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return directory


class PostgresCluster:
    """One initdb'd cluster; start()/stop() may be called again, keeping port and data."""

    def __init__(
        self,
        bin_dir: Path,
        listen: tuple[str, ...] = ("127.0.0.1",),
        clients: tuple[str, ...] = (),
    ) -> None:
        """listen: the addresses to serve on; clients: networks trusted besides 127.0.0.1."""
        self.bin_dir = bin_dir
        self.listen = listen
        self.root = Path(tempfile.mkdtemp(prefix="neuron-pg-"))  # /tmp: reachable by nobody
        self.data = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:  # the cluster's files belong to the user that runs it
            shutil.chown(self.root, UNPRIVILEGED, _group_of(UNPRIVILEGED))
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        with (self.data / "pg_hba.conf").open("a", encoding="utf-8") as hba:
            hba.writelines(f"host all all {network} trust\n" for network in clients)

    @property
    def url(self) -> str:
        return self.url_of("postgres")

    def url_of(self, database: str, host: str = "127.0.0.1") -> str:
        return f"postgresql://postgres@{host}:{self.port}/{database}"

    def start(self) -> PostgresCluster:
        options = (
            f"-c listen_addresses={','.join(self.listen)} -c port={self.port} "
            f"-c unix_socket_directories={self.root} -c fsync=off -c max_connections=200"
        )
        self._run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l",
            str(self.root / "server.log"), "-o", options,
        )  # fmt: skip
        return self

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self, mode: str = "fast") -> None:
        """Stop the postmaster by its pid (SIGINT: fast shutdown, SIGQUIT: immediate)."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT if mode == "immediate" else signal.SIGINT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)

    def running(self) -> bool:
        pid = self.pid()
        return pid is not None and _alive(pid)

    def create_database(self) -> str:
        """A new empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}".encode())
        return self.url_of(name)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _run(self, tool: str, *args: str) -> None:
        argv = [str(self.bin_dir / tool), *args]
        if self.as_root:
            argv = ["setpriv", f"--reuid={UNPRIVILEGED}", f"--regid={_group_of(UNPRIVILEGED)}",
                    "--clear-groups", "--", *argv]  # fmt: skip
        result = subprocess.run(
            argv, cwd=self.root, capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed:\n{result.stdout}\n{result.stderr}\n{self.log()}")


def _group_of(user: str) -> str:
    import grp
    import pwd

    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, and another user's (nobody's)
        return True
    return True


@contextlib.contextmanager
def running_cluster(
    listen: tuple[str, ...] = ("127.0.0.1",), clients: tuple[str, ...] = ()
) -> Iterator[PostgresCluster]:
    cluster = PostgresCluster(require_server_bin(), listen, clients)
    try:
        yield cluster.start()
    finally:
        cluster.destroy()
