"""A correction to python-fido2 2.2's data classes, installed wherever keyctl builds CTAP requests.

fido2 turns its data classes into CBOR maps (``_as_cbor``) and JSON (``dict(...)``) field by field through
``_DataClassMapping.__getitem__``, which returns any Sequence whose items are all Mappings as a list of
dicts. An empty ``str`` or ``bytes`` is such a Sequence (it has no items at all), so ``displayName: ""``
reached the authenticator as an empty CBOR *array* and the authenticator answered CBOR_UNEXPECTED_TYPE
(SimpleWebAuthn sends an empty display name by default). The same happens to ``name``, ``rp.name``, an
empty credential id in an exclude/allow list and any other empty text or byte string. Empty values are
legal WebAuthn: here they keep their type; every other value goes through fido2's own code unchanged.

The same path made the PRF (and hmacGetSecret) output carry ``second: []`` when only one salt was
evaluated (fido2 slices the second output out of 32 bytes of hmac-secret output: an empty byte string);
it is left out instead, as WebAuthn has it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def keep_empty_values() -> None:
    """Install the corrections (idempotent)."""
    from fido2.ctap2 import extensions
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

    format_outputs: Callable[[Any, bytes | None, bool], Any] = extensions._hmac_format_outputs

    def hmac_format_outputs(enabled: Any, decrypted: bytes | None, prf: bool) -> Any:
        outputs = format_outputs(enabled, decrypted, prf)
        for name, field in (("prf", "second"), ("hmacGetSecret", "output2")):
            value = (outputs or {}).get(name)
            value = value.results if name == "prf" and value is not None else value
            if value is not None and getattr(value, field) == b"":
                object.__setattr__(value, field, None)  # a frozen data class fido2 has just built
        return outputs

    extensions._hmac_format_outputs = hmac_format_outputs
