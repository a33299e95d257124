"""service.server.secretfiles: generated when absent, kept when present, a given value wins, 0400."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from service.server.secretfiles import GENERATED_BYTES, SecretError, SecretSpec, ensure, main

UID, GID = os.getuid(), os.getgid()


def spec(path: Path, min_length: int = 1, uid: int = UID, gid: int = GID) -> SecretSpec:
    return SecretSpec(path, uid, gid, "SOME_SECRET", min_length)


def test_generated_when_absent(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "token"
    assert ensure(spec(path), {}) == "generated"
    value = path.read_text(encoding="utf-8")
    # token_urlsafe(32): 43 characters of the URL-safe alphabet, no newline
    assert len(value) >= 43, value
    assert value.replace("-", "").replace("_", "").isalnum()
    other = tmp_path / "other"
    ensure(spec(other), {})
    assert other.read_text(encoding="utf-8") != value, "two generated secrets are equal"
    assert GENERATED_BYTES >= 32


def test_an_empty_variable_counts_as_unset(tmp_path: Path) -> None:
    path = tmp_path / "token"
    assert ensure(spec(path), {"SOME_SECRET": "  "}) == "generated"
    assert len(path.read_text(encoding="utf-8")) >= 43


def test_kept_when_present(tmp_path: Path) -> None:
    path = tmp_path / "token"
    ensure(spec(path), {})
    first = path.read_text(encoding="utf-8")
    inode = path.stat().st_ino
    for _ in range(3):
        assert ensure(spec(path), {}) == "kept"
    assert path.read_text(encoding="utf-8") == first
    assert path.stat().st_ino == inode, "an unchanged secret is not rewritten"


def test_an_empty_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("\n", encoding="utf-8")
    assert ensure(spec(path), {}) == "generated"
    assert len(path.read_text(encoding="utf-8")) >= 43


def test_the_environment_value_wins(tmp_path: Path) -> None:
    path = tmp_path / "token"
    ensure(spec(path), {})
    assert ensure(spec(path), {"SOME_SECRET": "chosen-by-the-user-0123"}) == "given"
    assert path.read_text(encoding="utf-8") == "chosen-by-the-user-0123"
    # and it stays once the variable is gone again
    assert ensure(spec(path), {}) == "kept"
    assert path.read_text(encoding="utf-8") == "chosen-by-the-user-0123"


def test_a_given_value_too_short_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    path = tmp_path / "token"
    ensure(spec(path, min_length=16), {})
    before = path.read_text(encoding="utf-8")
    with pytest.raises(SecretError, match="SOME_SECRET must be at least 16 characters"):
        ensure(spec(path, min_length=16), {"SOME_SECRET": "short"})
    assert path.read_text(encoding="utf-8") == before


def test_file_mode_is_owner_read_only(tmp_path: Path) -> None:
    path = tmp_path / "token"
    ensure(spec(path), {})
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    path.chmod(0o644)
    ensure(spec(path), {})
    assert stat.S_IMODE(path.stat().st_mode) == 0o400, "a loosened mode is put right"
    ensure(spec(path), {"SOME_SECRET": "chosen-by-the-user-0123"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    assert not [p.name for p in tmp_path.iterdir() if p.name != "token"], "temp file left"


@pytest.mark.skipif(os.getuid() != 0, reason="chown to another user needs root")
def test_owned_by_the_reading_user(tmp_path: Path) -> None:
    path = tmp_path / "token"
    ensure(spec(path, uid=10001, gid=10001), {})
    assert (path.stat().st_uid, path.stat().st_gid) == (10001, 10001)
    ensure(spec(path, uid=472, gid=0), {})
    assert (path.stat().st_uid, path.stat().st_gid) == (472, 0)
    assert stat.S_IMODE(path.stat().st_mode) == 0o400


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "/s/neuron/admin-token=10001:10001:NEURON_ADMIN_TOKEN:16",
            SecretSpec(Path("/s/neuron/admin-token"), 10001, 10001, "NEURON_ADMIN_TOKEN", 16),
        ),
        (
            "/s/grafana/admin-password=472:0:GRAFANA_ADMIN_PASSWORD",
            SecretSpec(Path("/s/grafana/admin-password"), 472, 0, "GRAFANA_ADMIN_PASSWORD", 1),
        ),
    ],
)
def test_spec_parsing(text: str, expected: SecretSpec) -> None:
    assert SecretSpec.parse(text) == expected


@pytest.mark.parametrize(
    "text", ["/s/token", "=1:2:V", "/s/t=1:2", "/s/t=a:2:V", "/s/t=1:2:", "/s/t=1:2:V:x:y"]
)
def test_bad_specs_are_refused(text: str) -> None:
    with pytest.raises(SecretError, match="bad secret spec"):
        SecretSpec.parse(text)


def test_main_reports_without_printing_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    argv = [f"{a}={UID}:{GID}:A_SECRET:16", f"{b}={UID}:{GID}:B_SECRET"]
    assert main(argv, {"B_SECRET": "user-chosen-password"}) == 0
    out = capsys.readouterr().out
    assert f"{a} generated" in out and f"{b} given from B_SECRET" in out
    assert a.read_text(encoding="utf-8") not in out and "user-chosen-password" not in out
    assert main(argv, {}) == 0
    assert f"{a} kept" in capsys.readouterr().out


def test_main_refuses_with_a_message_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], {}) == 2
    assert "no secrets named" in capsys.readouterr().err
    assert main(["nonsense"], {}) == 2
    assert "bad secret spec" in capsys.readouterr().err
