"""ServiceError and its subclasses: each carries its HTTP status and a stable error code."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

Detail = dict[str, Any]


class ServiceError(Exception):
    """Base of every error a client may see; rendered as the one JSON envelope."""

    status: int = 500
    code: str = "internal_error"
    headers: ClassVar[Mapping[str, str]] = {}

    def __init__(self, message: str, details: Sequence[Detail] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


class MalformedRequest(ServiceError):
    status, code = 400, "malformed_json"


class MalformedCsv(ServiceError):
    """A text/csv body that cannot be read as CSV at all (encoding, quoting, ragged rows)."""

    status, code = 400, "malformed_csv"


class MalformedEncoding(ServiceError):
    """A body whose Content-Encoding (gzip, deflate) does not decode: corrupt or truncated."""

    status, code = 400, "malformed_encoding"


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"
    headers: ClassVar[Mapping[str, str]] = {"WWW-Authenticate": 'Bearer realm="neuron-admin"'}


class AdminDisabled(ServiceError):
    status, code = 403, "admin_disabled"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class MethodNotAllowed(ServiceError):
    status, code = 405, "method_not_allowed"


class Conflict(ServiceError):
    """The resource's state does not allow it (e.g. cancelling a job that has ended)."""

    status, code = 409, "conflict"


class PayloadTooLarge(ServiceError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status, code = 415, "unsupported_media_type"


class ValidationFailed(ServiceError):
    status, code = 422, "validation_error"


class TrainingRejected(ServiceError):
    """Training ran but its model is not worth serving (no improvement, saturated, too slow)."""

    status, code = 422, "training_rejected"


class NotReady(ServiceError):
    status, code = 503, "not_ready"


class StorageUnavailable(ServiceError):
    status, code = 503, "storage_unavailable"


class InsufficientStorage(ServiceError):
    status, code = 507, "insufficient_storage"


class MalformedHttp(ServiceError):
    """Bytes that are not one well-framed HTTP/1.1 request (answered by the server layer)."""

    status, code = 400, "malformed_http"


class UriTooLong(ServiceError):
    status, code = 414, "uri_too_long"


class HeadersTooLarge(ServiceError):
    status, code = 431, "headers_too_large"


class NotImplementedHttp(ServiceError):
    """A transfer coding or method the server does not implement (only chunked is)."""

    status, code = 501, "not_implemented"


class HttpVersionNotSupported(ServiceError):
    status, code = 505, "http_version_not_supported"


class CorruptModel(Exception):
    """A stored model document failed its checksum or schema; never shown to clients as such."""


def validation_error(message: str, loc: Sequence[str | int], msg: str) -> ValidationFailed:
    return ValidationFailed(message, [{"loc": list(loc), "msg": msg}])
