"""largeBlob at registration, as a browser handles it (CTAP refuses largeBlobKey for a credential that
is not discoverable): "preferred" goes through without it, "required" is refused before the authenticator
makes anything, and a discoverable credential gets its large blob key."""

from __future__ import annotations

from typing import Any

import pytest
from fido2.webauthn import AuthenticatorSelectionCriteria, ResidentKeyRequirement

from keyctl.errors import NotSupported
from keyctl.webauthn import ceremony
from tests.webauthn.conftest import Opener, Quiet, authenticator
from tests.webauthn.test_empty_values import DISCOURAGED, ORIGIN, _creation, _recorded

RESIDENT = AuthenticatorSelectionCriteria(
    resident_key=ResidentKeyRequirement.REQUIRED, user_verification=DISCOURAGED
)


def _register(transport: Opener, largeBlob: dict[str, Any], **overrides: Any) -> tuple[Any, list[bytes]]:
    device = _recorded(transport, authenticator())
    options = _creation(extensions={"largeBlob": largeBlob}, **overrides)
    made = ceremony.make_credential(device, ORIGIN, options, Quiet(), 5)
    return made, [m for m in device.cbor if m[:1] == b"\x01"]


def test_preferred_without_a_resident_key_goes_through_unsupported(transport: Opener) -> None:
    made, sent = _register(transport, {"support": "preferred"})
    assert dict(made.client_extension_results) == {"largeBlob": {"supported": False}}
    assert b"largeBlobKey" not in sent[0]


def test_required_without_a_resident_key_is_refused_before_the_authenticator(transport: Opener) -> None:
    device = _recorded(transport, authenticator())
    options = _creation(extensions={"largeBlob": {"support": "required"}})
    with pytest.raises(NotSupported) as refused:
        ceremony.make_credential(device, ORIGIN, options, Quiet(), 5)
    assert [m for m in device.cbor if m[:1] == b"\x01"] == []  # no authenticatorMakeCredential
    assert refused.value.message == (
        "Passkeys not supported: the server requires largeBlob for a credential that is not discoverable"
        " (largeBlob needs residentKey required or preferred)"
    )


def test_a_discoverable_credential_gets_its_large_blob_key(transport: Opener) -> None:
    made, sent = _register(transport, {"support": "required"}, authenticator_selection=RESIDENT)
    assert dict(made.client_extension_results) == {"largeBlob": {"supported": True}}
    assert b"largeBlobKey" in sent[0]


def test_what_fido2_refuses_is_not_supported_with_its_reason(transport: Opener) -> None:
    with pytest.raises(NotSupported) as refused:
        _register(transport, {"support": "required", "read": True}, authenticator_selection=RESIDENT)
    assert refused.value.message == "Passkeys not supported: Invalid set of parameters"
