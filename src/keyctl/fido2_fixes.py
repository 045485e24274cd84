"""A correction to python-fido2 2.2's data classes, installed wherever keyctl builds CTAP requests.

fido2 turns its data classes into CBOR maps (``_as_cbor``) and JSON (``dict(...)``) field by field through
``_DataClassMapping.__getitem__``, which returns any Sequence whose items are all Mappings as a list of
dicts. An empty ``str`` or ``bytes`` is such a Sequence (it has no items at all), so ``displayName: ""``
reached the authenticator as an empty CBOR *array* and the authenticator answered CBOR_UNEXPECTED_TYPE
(SimpleWebAuthn sends an empty display name by default). The same happens to ``name``, ``rp.name``, an
empty credential id in an exclude/allow list and any other empty text or byte string. Empty values are
legal WebAuthn: here they keep their type; every other value goes through fido2's own code unchanged.
"""

from __future__ import annotations

from typing import Any


def keep_empty_values() -> None:
    """Install the correction (idempotent)."""
    from fido2.utils import _DataClassMapping

    original = _DataClassMapping.__dict__["__getitem__"]
    if getattr(original, "keeps_empty_values", False):
        return

    def getitem(self: Any, key: Any) -> Any:
        field = self._field_keys[key]
        value = getattr(self, field.name)
        if isinstance(value, (str, bytes)) and not value and not field.metadata.get("serialize"):
            return value
        return original(self, key)

    getitem.keeps_empty_values = True  # type: ignore[attr-defined]
    _DataClassMapping.__getitem__ = getitem  # type: ignore[method-assign]
