"""Caches for two lookups python-fido2 2.2 repeats on every object it builds, used by both the client
side (keyctl.webauthn) and the reference server: behaviour stays fido2's own.

fido2's data classes work out, on every construction and ``from_dict``, two things that never change
for a class: its type hints (``typing.get_type_hints`` compiles the string annotations again: measured at
~60% of a login's client CPU time, three authenticatorGetInfo parses alone ~15 ms each, and ~3 ms of the
server's CPU per login) and, for CTAP's CBOR objects, each field's integer key (``fields(cls).index(field)``
for every field: quadratic, ~10% of a login's client CPU time with the hints cached).
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable


def cache_fido2_class_lookups() -> None:
    """Install both caches (idempotent)."""
    import fido2.utils
    from fido2.ctap2.base import _CborDataObject

    namespace = vars(fido2.utils)
    if not hasattr(namespace["get_type_hints"], "cache_info"):
        namespace["get_type_hints"] = functools.cache(typing.get_type_hints)
    field_key = _CborDataObject.__dict__["_get_field_key"].__func__
    if not hasattr(field_key, "cache_info"):
        cached = typing.cast(Callable[..., int], functools.cache(field_key))
        setattr(_CborDataObject, "_get_field_key", classmethod(cached))  # noqa: B010
