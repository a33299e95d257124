"""service.errors: every error a client may see carries its HTTP status and a stable code."""

from __future__ import annotations

import pytest

from service import errors

ALL = [
    value
    for value in vars(errors).values()
    if isinstance(value, type) and issubclass(value, errors.ServiceError)
]


def test_every_error_has_its_own_code_and_a_valid_status() -> None:
    assert len(ALL) > 10
    codes: dict[tuple[str, int], type] = {}
    for kind in ALL:
        assert 400 <= kind.status <= 599, kind
        assert kind.code and kind.code == kind.code.lower() and " " not in kind.code
        assert (kind.code, kind.status) not in codes, (kind, codes.get((kind.code, kind.status)))
        codes[(kind.code, kind.status)] = kind


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        (errors.MalformedRequest, 400, "malformed_json"),
        (errors.Unauthorized, 401, "unauthorized"),
        (errors.PayloadTooLarge, 413, "payload_too_large"),
        (errors.UnsupportedMediaType, 415, "unsupported_media_type"),
        (errors.ValidationFailed, 422, "validation_error"),
        (errors.NotReady, 503, "not_ready"),
        (errors.InsufficientStorage, 507, "insufficient_storage"),
    ],
)
def test_documented_statuses(kind: type[errors.ServiceError], status: int, code: str) -> None:
    assert (kind.status, kind.code) == (status, code)


def test_envelope_has_details_only_when_there_are_some() -> None:
    assert errors.NotReady("no model").envelope() == {
        "error": {"code": "not_ready", "message": "no model"}
    }
    detail = {"loc": ["inputs"], "msg": "bad"}
    assert errors.ValidationFailed("invalid", [detail]).envelope() == {
        "error": {"code": "validation_error", "message": "invalid", "details": [detail]}
    }


def test_unauthorized_names_its_scheme() -> None:
    assert errors.Unauthorized("x").headers["WWW-Authenticate"].startswith("Bearer ")
