"""Small builders shared by the tests."""

from __future__ import annotations

from service.store import TrainingMetadata, utc_now


def training_metadata(**changes: object) -> TrainingMetadata:
    """Plausible metadata for a stored test model; keyword arguments override fields."""
    fields: dict[str, object] = {
        "source": "retrain",
        "seed": 1,
        "iterations": 10,
        "learning_rate": 1.0,
        "loss": 0.1,
        "initial_loss": 0.3,
        "rows": 4,
        "data_sha256": "0" * 64,
        "trained_at": utc_now(),
        "duration_seconds": 0.01,
    }
    fields.update(changes)
    return TrainingMetadata.model_validate(fields)
