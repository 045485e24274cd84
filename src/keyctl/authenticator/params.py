"""Typed access to the integer-keyed CBOR maps of CTAP requests (parsing, separate from handling)."""

from __future__ import annotations

from typing import Any, TypeVar

from keyctl.authenticator.status import CtapFailure, Status

T = TypeVar("T")


def _typed(value: Any, kind: type[T]) -> T:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CtapFailure(Status.CBOR_UNEXPECTED_TYPE)
    return value


def required(params: dict[Any, Any], key: Any, kind: type[T]) -> T:
    if key not in params:
        raise CtapFailure(Status.MISSING_PARAMETER)
    return _typed(params[key], kind)


def optional(params: dict[Any, Any], key: Any, kind: type[T]) -> T | None:
    if key not in params or params[key] is None:
        return None
    return _typed(params[key], kind)


def options(params: dict[Any, Any], key: int) -> dict[str, bool]:
    """The options map: string keys, boolean values."""
    raw = optional(params, key, dict) or {}
    for name, value in raw.items():
        if not isinstance(name, str) or not isinstance(value, bool):
            raise CtapFailure(Status.CBOR_UNEXPECTED_TYPE)
    return raw


def descriptors(params: dict[Any, Any], key: int) -> list[bytes]:
    """Credential IDs of a list of PublicKeyCredentialDescriptors (other types are skipped)."""
    ids = []
    for item in optional(params, key, list) or []:
        item = _typed(item, dict)
        cred_type = required(item, "type", str)
        cred_id = required(item, "id", bytes)
        if cred_type == "public-key":
            ids.append(cred_id)
    return ids
