"""Settings: environment prefix, documented fields, refused combinations."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings


def test_every_field_is_documented() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description"


def test_read_from_neuron_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEURON_MAX_BATCH", "7")
    monkeypatch.setenv("NEURON_MODEL_DIR", "/data")
    settings = Settings()
    assert settings.max_batch == 7
    assert settings.model_dir == Path("/data")


def test_short_tokens_are_refused_with_a_clear_message() -> None:
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(admin_token="short")


def test_token_file_wins(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-a-docker-secret-0123\n")
    settings = Settings(admin_token="from-the-environment-0123", admin_token_file=secret)
    assert settings.token() == "from-a-docker-secret-0123"
    assert "from-the-environment" not in repr(settings)


def test_no_token_keeps_admin_closed() -> None:
    assert Settings(admin_token="").token() is None
    assert Settings().token() is None


def test_training_budget_must_fit_in_the_worker_timeout() -> None:
    with pytest.raises(ValidationError, match="shorter than worker_timeout_seconds"):
        Settings(training_budget_seconds=30, worker_timeout_seconds=30)
