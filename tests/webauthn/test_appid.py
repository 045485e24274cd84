"""keyctl's WebAuthn client with the FIDO AppID extensions (issue #16 item 1, client side).

A legacy credential is made with python-fido2's Ctap1 (U2F_REGISTER under the AppID's application
parameter), then used through keyctl's ceremony and verified by py_webauthn with the AppID as the
expected rpId, which is how a relying party that migrated from U2F checks it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from fido2 import cbor
from fido2.cose import ES256
from fido2.ctap1 import Ctap1
from fido2.hid import CtapHidDevice
from fido2.webauthn import PublicKeyCredentialCreationOptions, PublicKeyCredentialRequestOptions
from webauthn.helpers.structs import PublicKeyCredentialDescriptor, UserVerificationRequirement

from keyctl.authenticator import VirtualAuthenticator, new_state
from keyctl.authenticator.state import Protocols
from keyctl.errors import CredentialExcluded, NoCredential, PhishingRefused
from keyctl.hid.inprocess import connect
from keyctl.webauthn import ceremony
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
)

ORIGIN = "https://example.com"
RP_ID = "example.com"
APP_ID = "https://example.com/u2f/appid.json"


class Touch:
    def touch(self) -> None:
        return None

    def pin(self) -> str | None:
        return None


@pytest.fixture(params=[Protocols.BOTH, Protocols.U2F])
def device(request: pytest.FixtureRequest) -> CtapHidDevice:
    """A FIDO2 key (CTAP2 and U2F) or an old U2F-only key, which fido2's client reaches through CTAP1."""
    return connect(VirtualAuthenticator(new_state(protocols=request.param)))


def legacy_registration(device: CtapHidDevice) -> tuple[bytes, bytes]:
    """(key handle, COSE public key) of a credential registered with U2F under APP_ID."""
    registration = Ctap1(device).register(b"\x01" * 32, hashlib.sha256(APP_ID.encode()).digest())
    return registration.key_handle, cbor.encode(ES256.from_ctap1(registration.public_key))


def request_options(key_handle: bytes, extensions: dict[str, Any] | None) -> tuple[bytes, Any]:
    options = generate_authentication_options(
        rp_id=RP_ID,
        allow_credentials=[PublicKeyCredentialDescriptor(id=key_handle)],
        user_verification=UserVerificationRequirement.DISCOURAGED,
    )
    public_key = json.loads(options_to_json(options))
    if extensions is not None:
        public_key["extensions"] = extensions
    return options.challenge, PublicKeyCredentialRequestOptions.from_dict(public_key)


def test_appid_signs_in_with_a_u2f_credential(device: CtapHidDevice) -> None:
    key_handle, public_key = legacy_registration(device)
    challenge, options = request_options(key_handle, {"appid": APP_ID})
    response = ceremony.get_assertion(device, ORIGIN, options, Touch(), 30)
    credential = dict(response)
    assert credential["clientExtensionResults"] == {"appid": True}
    verified = verify_authentication_response(
        credential=credential,
        expected_challenge=challenge,
        expected_rp_id=APP_ID,  # the RP checks rpIdHash against SHA-256 of its AppID
        expected_origin=ORIGIN,
        credential_public_key=public_key,
        credential_current_sign_count=0,
    )
    assert verified.new_sign_count > 0


def test_without_appid_the_u2f_credential_is_not_found(device: CtapHidDevice) -> None:
    key_handle, _ = legacy_registration(device)
    _, options = request_options(key_handle, None)
    with pytest.raises(NoCredential):
        ceremony.get_assertion(device, ORIGIN, options, Touch(), 30)


def test_appid_reports_false_for_a_webauthn_credential(device: CtapHidDevice) -> None:
    registered = ceremony.make_credential(device, ORIGIN, creation_options(None, []), Touch(), 30)
    _, options = request_options(registered.raw_id, {"appid": APP_ID})
    response = ceremony.get_assertion(device, ORIGIN, options, Touch(), 30)
    assert dict(response)["clientExtensionResults"] == {"appid": False}


def creation_options(
    extensions: dict[str, Any] | None, exclude: list[bytes]
) -> PublicKeyCredentialCreationOptions:
    options = generate_registration_options(
        rp_id=RP_ID,
        rp_name="Example",
        user_name="alice",
        user_id=b"alice",
        exclude_credentials=[PublicKeyCredentialDescriptor(id=c) for c in exclude],
    )
    public_key = json.loads(options_to_json(options))
    if extensions is not None:
        public_key["extensions"] = extensions
    return PublicKeyCredentialCreationOptions.from_dict(public_key)


def test_appid_exclude_refuses_a_key_registered_with_u2f(device: CtapHidDevice) -> None:
    key_handle, _ = legacy_registration(device)
    with pytest.raises(CredentialExcluded):
        ceremony.make_credential(
            device, ORIGIN, creation_options({"appidExclude": APP_ID}, [key_handle]), Touch(), 30
        )
    # the same request without the extension registers: the AppID is what excluded it
    plain = ceremony.make_credential(device, ORIGIN, creation_options(None, [key_handle]), Touch(), 30)
    assert "appidExclude" not in dict(plain)["clientExtensionResults"]
    other = connect(VirtualAuthenticator(new_state()))
    made = ceremony.make_credential(
        other, ORIGIN, creation_options({"appidExclude": APP_ID}, [key_handle]), Touch(), 30
    )
    assert dict(made)["clientExtensionResults"] == {"appidExclude": True}


@pytest.mark.parametrize("bad", ["https://evil.example.net/appid.json", "http://example.com/appid.json", 42])
def test_an_appid_of_another_site_is_refused_before_the_authenticator(
    device: CtapHidDevice, bad: Any
) -> None:
    key_handle, _ = legacy_registration(device)
    _, options = request_options(key_handle, {"appid": bad})
    check = Ctap1(device).authenticate(b"\0" * 32, hashlib.sha256(APP_ID.encode()).digest(), key_handle)
    with pytest.raises(PhishingRefused):
        ceremony.get_assertion(device, ORIGIN, options, Touch(), 30)
    with pytest.raises(PhishingRefused):
        ceremony.make_credential(
            device, ORIGIN, creation_options({"appidExclude": bad}, [key_handle]), Touch(), 30
        )
    after = Ctap1(device).authenticate(b"\0" * 32, hashlib.sha256(APP_ID.encode()).digest(), key_handle)
    assert after.counter == check.counter + 1  # nothing signed in between
