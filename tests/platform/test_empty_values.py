"""The platform route with empty names (issue #13 item 1): fido2's WindowsClient marshals the user and RP
entities into webauthn.dll's structures from ``_as_cbor``; the fake DLL reads them back from memory."""

from __future__ import annotations

from fido2.webauthn import (
    PublicKeyCredentialCreationOptions,
    PublicKeyCredentialParameters,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
)

from keyctl import platform
from keyctl.webauthn import ceremony
from tests.platform.conftest import Windows
from tests.platform.webauthn_dll import FakeWebAuthnDll, MakeCredentialCall
from tests.webauthn.conftest import Quiet


def test_empty_names_reach_webauthn_dll_as_empty_text(windows: Windows) -> None:
    dll = windows(FakeWebAuthnDll(4))
    assert dll is not None
    options = PublicKeyCredentialCreationOptions(
        rp=PublicKeyCredentialRpEntity(name="", id="example.com"),
        user=PublicKeyCredentialUserEntity(name="", id=b"\x01\x02", display_name=""),
        challenge=b"c" * 16,
        pub_key_cred_params=[PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=-7)],
    )
    registered = ceremony.make_credential(
        platform.authenticator(), "https://example.com", options, Quiet(), 5
    )
    made = dll.calls[0]
    assert isinstance(made, MakeCredentialCall)
    assert (made.rp_name, made.user_id, made.user_name, made.user_display_name) == ("", b"\x01\x02", "", "")
    assert registered.raw_id
