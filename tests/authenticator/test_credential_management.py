"""authenticatorCredentialManagement through fido2's CredentialManagement, and reset/selection."""

from __future__ import annotations

import hashlib

import pytest
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.credman import CredentialManagement
from fido2.ctap2.pin import ClientPin

from keyctl.authenticator import FakeClock, PresenceMode, UvMode, VirtualAuthenticator, new_state
from tests.authenticator.conftest import Transport

ERR = CtapError.ERR
CDH = hashlib.sha256(b"cd").digest()
ES256 = [{"type": "public-key", "alg": -7}]


def _setup(transport: Transport) -> tuple[Ctap2, ClientPin]:
    ctap = Ctap2(transport(VirtualAuthenticator(new_state(uv=UvMode.NONE), pin_code="1234")))
    client_pin = ClientPin(ctap)
    for rp_id, user in (("a.example", b"alice"), ("a.example", b"bob"), ("b.example", b"carol")):
        # a token without an RP ID is bound to the first RP it is used for
        token = client_pin.get_pin_token("1234", ClientPin.PERMISSION.MAKE_CREDENTIAL)
        auth = client_pin.protocol.authenticate(token, CDH)
        ctap.make_credential(
            CDH,
            {"id": rp_id, "name": rp_id.upper()},
            {"id": user, "name": user.decode(), "displayName": user.decode().title()},
            ES256,
            options={"rk": True},
            pin_uv_param=auth,
            pin_uv_protocol=client_pin.protocol.VERSION,
        )
    return ctap, client_pin


def test_metadata_enumerate_update_delete(transport: Transport) -> None:
    ctap, client_pin = _setup(transport)
    token = client_pin.get_pin_token("1234", ClientPin.PERMISSION.CREDENTIAL_MGMT)
    credman = CredentialManagement(ctap, client_pin.protocol, token)
    metadata = credman.get_metadata()
    assert metadata[CredentialManagement.RESULT.EXISTING_CRED_COUNT] == 3
    assert metadata[CredentialManagement.RESULT.MAX_REMAINING_COUNT] == 97
    rps = credman.enumerate_rps()
    assert sorted(r[CredentialManagement.RESULT.RP]["id"] for r in rps) == ["a.example", "b.example"]
    assert {r[CredentialManagement.RESULT.RP]["name"] for r in rps} == {"A.EXAMPLE", "B.EXAMPLE"}
    creds = credman.enumerate_creds(hashlib.sha256(b"a.example").digest())
    users = sorted(c[CredentialManagement.RESULT.USER]["name"] for c in creds)
    assert users == ["alice", "bob"]
    alice = next(c for c in creds if c[CredentialManagement.RESULT.USER]["id"] == b"alice")
    descriptor = alice[CredentialManagement.RESULT.CREDENTIAL_ID]
    assert alice[CredentialManagement.RESULT.PUBLIC_KEY][3] == -7

    credman.update_user_info(descriptor, {"id": b"alice", "name": "alice@new", "displayName": "Alice N."})
    creds = credman.enumerate_creds(hashlib.sha256(b"a.example").digest())
    assert "alice@new" in {c[CredentialManagement.RESULT.USER]["name"] for c in creds}
    with pytest.raises(CtapError) as raised:
        credman.update_user_info(descriptor, {"id": b"mallory", "name": "x"})
    assert raised.value.code == ERR.INVALID_PARAMETER

    credman.delete_cred(descriptor)
    assert credman.get_metadata()[CredentialManagement.RESULT.EXISTING_CRED_COUNT] == 2
    with pytest.raises(CtapError) as raised:
        credman.delete_cred(descriptor)
    assert raised.value.code == ERR.NO_CREDENTIALS
    with pytest.raises(CtapError) as raised:  # the deleted credential no longer signs
        ctap.get_assertion("a.example", CDH, [descriptor])
    assert raised.value.code == ERR.NO_CREDENTIALS
    with pytest.raises(CtapError) as raised:
        credman.enumerate_creds_begin(hashlib.sha256(b"nobody.example").digest())
    assert raised.value.code == ERR.NO_CREDENTIALS


def test_credential_management_needs_the_right_token(transport: Transport) -> None:
    ctap, client_pin = _setup(transport)
    no_cm = client_pin.get_pin_token("1234", ClientPin.PERMISSION.GET_ASSERTION)
    with pytest.raises(CtapError) as raised:
        CredentialManagement(ctap, client_pin.protocol, no_cm).get_metadata()
    assert raised.value.code == ERR.PIN_AUTH_INVALID
    bound = client_pin.get_pin_token("1234", ClientPin.PERMISSION.CREDENTIAL_MGMT, "b.example")
    credman = CredentialManagement(ctap, client_pin.protocol, bound)
    assert len(credman.enumerate_creds(hashlib.sha256(b"b.example").digest())) == 1
    with pytest.raises(CtapError) as raised:
        credman.enumerate_creds_begin(hashlib.sha256(b"a.example").digest())
    assert raised.value.code == ERR.PIN_AUTH_INVALID
    with pytest.raises(CtapError) as raised:
        credman.get_metadata()
    assert raised.value.code == ERR.PIN_AUTH_INVALID
    with pytest.raises(CtapError) as raised:
        ctap.credential_mgmt(CredentialManagement.CMD.GET_CREDS_METADATA)
    assert raised.value.code == ERR.PUAT_REQUIRED


def test_reset_only_right_after_power_up(transport: Transport) -> None:
    clock = FakeClock()
    authenticator = VirtualAuthenticator(new_state(uv=UvMode.NONE), pin_code="1234", clock=clock)
    ctap = Ctap2(transport(authenticator))
    made = ctap.make_credential(CDH, {"id": "example.com"}, {"id": b"u"}, ES256)
    clock.advance(11)
    with pytest.raises(CtapError) as raised:
        ctap.reset()
    assert raised.value.code == ERR.NOT_ALLOWED
    authenticator.power_cycle()
    clock.advance(2)
    ctap.reset()
    info = ctap.get_info()
    assert info.options["clientPin"] is False
    descriptor = {"type": "public-key", "id": made.auth_data.credential_data.credential_id}
    with pytest.raises(CtapError) as raised:  # non-discoverable IDs die with the old wrapping key
        ctap.get_assertion("example.com", CDH, [descriptor])
    assert raised.value.code == ERR.NO_CREDENTIALS


def test_reset_needs_a_touch(transport: Transport) -> None:
    ctap = Ctap2(transport(VirtualAuthenticator(new_state(presence=PresenceMode.DENY))))
    with pytest.raises(CtapError) as raised:
        ctap.reset()
    assert raised.value.code == ERR.OPERATION_DENIED
    with pytest.raises(CtapError) as raised:
        ctap.selection()
    assert raised.value.code == ERR.OPERATION_DENIED


def test_selection_with_a_touch(device: object) -> None:
    Ctap2(device).selection()  # type: ignore[arg-type]
