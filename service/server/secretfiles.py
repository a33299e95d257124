"""First-start secrets for `docker compose up`: one file per secret, made once, given ones win.

Run as `python -m service.secretfiles PATH=UID:GID:VARIABLE[:MIN_LENGTH] ...` by the compose
stack's one-shot `secrets` service, as root, before the services that read the files start.
For each secret: a non-empty VARIABLE in the environment (the user's `.env`) is written into
PATH; otherwise an existing non-empty PATH is kept; otherwise a random one is generated. The file
ends up owned by UID:GID with mode 0400, so only that user (the service reading it) can read it.
Values are never printed.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# 32 random bytes: 256 bits, 43 URL-safe characters.
GENERATED_BYTES = 32
MODE = 0o400

Outcome = Literal["generated", "kept", "given"]


class SecretError(ValueError):
    """A spec or a given value the init step refuses; its message is shown to the user."""


@dataclass(frozen=True)
class SecretSpec:
    """Where one secret lives, who may read it, and the variable that may set it."""

    path: Path
    uid: int
    gid: int
    variable: str
    min_length: int = 1

    @classmethod
    def parse(cls, text: str) -> SecretSpec:
        """`PATH=UID:GID:VARIABLE[:MIN_LENGTH]`."""
        path, sep, rest = text.rpartition("=")
        fields = rest.split(":")
        if not sep or not path or len(fields) not in (3, 4):
            raise SecretError(f"bad secret spec {text!r}: expected PATH=UID:GID:VARIABLE[:MIN]")
        try:
            numbers = [int(field) for field in (fields[0], fields[1], *fields[3:])]
        except ValueError:
            raise SecretError(f"bad secret spec {text!r}: UID, GID and MIN are numbers") from None
        if not fields[2]:
            raise SecretError(f"bad secret spec {text!r}: no variable name")
        return cls(Path(path), numbers[0], numbers[1], fields[2], *numbers[2:])


def ensure(spec: SecretSpec, environ: Mapping[str, str]) -> Outcome:
    """Make spec.path hold the secret, owned by spec.uid:spec.gid, mode 0400; say what was done."""
    given = environ.get(spec.variable, "").strip()
    current = _read(spec.path)
    if given:
        if len(given) < spec.min_length:
            raise SecretError(
                f"{spec.variable} must be at least {spec.min_length} characters "
                "(or leave it empty to have one generated)"
            )
        outcome: Outcome = "given"
        value = given
    elif current:
        outcome, value = "kept", current
    else:
        outcome, value = "generated", secrets.token_urlsafe(GENERATED_BYTES)
    if value != current:
        _write(spec.path, value)
    _own(spec.path, spec.uid, spec.gid)
    return outcome


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""


def _write(path: Path, value: str) -> None:
    """Atomically replace path: a crash leaves the old secret or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MODE)
    try:
        os.write(fd, value.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _own(path: Path, uid: int, gid: int) -> None:
    """Owner and mode on every run, so that a file changed by hand is put right again."""
    if (path.stat().st_uid, path.stat().st_gid) != (uid, gid):
        os.chown(path, uid, gid)
    os.chmod(path, MODE)


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """Ensure every secret named in argv; 0 on success, 2 with a message on a refused input."""
    try:
        specs = [SecretSpec.parse(arg) for arg in argv]
        if not specs:
            raise SecretError("no secrets named: PATH=UID:GID:VARIABLE[:MIN] ...")
        for spec in specs:
            outcome = ensure(spec, environ)
            source = f" from {spec.variable}" if outcome == "given" else ""
            print(f"secretfiles: {spec.path} {outcome}{source}", flush=True)
    except (SecretError, OSError) as exc:
        print(f"secretfiles: error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ))
