"""The test setup installs Debian's chromium only when it is missing, and only as root."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from . import chromium


@pytest.fixture
def missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "chromium"
    monkeypatch.setattr(chromium, "CHROMIUM", path)
    return path


def _fake_apt(calls: list[tuple[str, ...]], binary: Path, works_after_update: bool) -> object:
    def apt(*args: str) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        if args[0] == "install" and (not works_after_update or ("update",) in calls):
            binary.write_text("#!/bin/sh\n")
            binary.chmod(0o755)
            return subprocess.CompletedProcess(args, 0, "", "")
        return subprocess.CompletedProcess(args, 100 if args[0] == "install" else 0, "", "E:")

    return apt


def test_present_binary_means_no_apt(missing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing.write_text("#!/bin/sh\n")
    missing.chmod(0o755)
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(chromium, "_apt", _fake_apt(calls, missing, False))
    assert chromium.ensure() is None
    assert calls == []


def test_missing_binary_is_installed_as_root(
    missing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(chromium, "_apt", _fake_apt(calls, missing, False))
    assert chromium.ensure() is None
    assert calls == [("install", "-y", "chromium")]


def test_fresh_machine_updates_the_lists_then_installs(
    missing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(chromium, "_apt", _fake_apt(calls, missing, True))
    assert chromium.ensure() is None
    assert calls == [("install", "-y", "chromium"), ("update",), ("install", "-y", "chromium")]


def test_not_root_says_why_and_installs_nothing(
    missing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(chromium, "_apt", _fake_apt(calls, missing, False))
    problem = chromium.ensure()
    assert problem is not None and "not root" in problem
    assert calls == []
