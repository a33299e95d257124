"""The model store: the document format, the Store interface and its two backends.

document.py holds the document, directory.py the embedded default, postgres.py the shared
store for replicas on several hosts (imported only when NEURON_STORE_URL asks for it);
current.py is this process's serving version, refreshed whenever the store's pointer moves.

Imports the model layer and the shared modules (errors, settings) only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from ..settings import store_kind
from .base import OnCorrupt, Store
from .directory import LOCK, POINTER, TEMP_PREFIX, ModelStore
from .document import (
    FORMAT,
    FORMAT_VERSION,
    ModelDocument,
    ModelRecord,
    StoredFeatureStatistics,
    StoredScaling,
    TrainingMetadata,
    Validation,
    canonical,
    data_digest,
    decode,
    encode,
    utc_now,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LOCK",
    "POINTER",
    "TEMP_PREFIX",
    "ModelDocument",
    "ModelRecord",
    "ModelStore",
    "OnCorrupt",
    "Store",
    "StoredFeatureStatistics",
    "StoredScaling",
    "TrainingMetadata",
    "Validation",
    "canonical",
    "data_digest",
    "decode",
    "encode",
    "open_store",
    "utc_now",
]


def open_store(
    url: str | None,
    model_dir: Path,
    keep: int,
    on_corrupt: OnCorrupt | None = None,
    on_up: Callable[[bool], None] | None = None,
) -> Store:
    """The backend a NEURON_STORE_URL names; unset keeps the directory at model_dir."""
    if store_kind(url) == "postgresql":
        from .postgres import PostgresStore  # psycopg is loaded only by those who use it

        assert url is not None
        return PostgresStore(url, keep, on_corrupt, on_up)
    directory = (
        model_dir if not url else Path(urlsplit(url).path if url.startswith("file:") else url)
    )
    return ModelStore(directory, keep, on_corrupt)
