"""The model store: the document format (document.py) and the directory backend (directory.py)."""

from .directory import LOCK, POINTER, TEMP_PREFIX, ModelStore
from .document import (
    FORMAT,
    FORMAT_VERSION,
    ModelDocument,
    ModelRecord,
    TrainingMetadata,
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
    "TrainingMetadata",
    "canonical",
    "data_digest",
    "decode",
    "encode",
    "utc_now",
]
