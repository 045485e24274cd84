"""Extension outputs of makeCredential/getAssertion through fido2's Ctap2, over both transports."""

from __future__ import annotations

import hashlib
import os
import struct
from typing import Any

import pytest
from fido2 import cbor
from fido2.client import DefaultClientDataCollector, Fido2Client
from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin, Ctap2, LargeBlobs
from fido2.ctap2.pin import PinProtocolV2
from fido2.hid import CtapHidDevice
from fido2.utils import websafe_decode, websafe_encode
from fido2.webauthn import PublicKeyCredentialCreationOptions, PublicKeyCredentialRequestOptions

ERR = CtapError.ERR

RP = {"id": "example.com", "name": "Example"}
ES256 = [{"type": "public-key", "alg": -7}]
CDH = hashlib.sha256(b"client data").digest()


@pytest.mark.parametrize("level", [1, 2, 3])
def test_cred_protect_output_reports_the_applied_level(device: CtapHidDevice, level: int) -> None:
    made = Ctap2(device).make_credential(
        CDH, RP, {"id": b"u"}, ES256, extensions={"credProtect": level}, options={"rk": True, "uv": True}
    )
    assert made.auth_data.extensions == {"credProtect": level}


def test_no_cred_protect_request_means_no_extension_output(device: CtapHidDevice) -> None:
    made = Ctap2(device).make_credential(CDH, RP, {"id": b"u"}, ES256, options={"rk": True, "uv": True})
    assert made.auth_data.extensions is None


# --- CTAP 2.2 parts browsers use: hmac-secret-mc, largeBlobKey + authenticatorLargeBlobs, thirdPartyPayment


def _client(device: CtapHidDevice) -> Fido2Client:
    return Fido2Client(device, DefaultClientDataCollector("https://example.com"))


def _creation(extensions: dict[str, Any]) -> PublicKeyCredentialCreationOptions:
    return PublicKeyCredentialCreationOptions.from_dict(
        {
            "rp": {"id": "example.com", "name": "Example"},
            "user": {"id": websafe_encode(b"alice"), "name": "alice", "displayName": "Alice"},
            "challenge": websafe_encode(os.urandom(32)),
            "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
            "authenticatorSelection": {"residentKey": "required", "userVerification": "required"},
            "extensions": extensions,
        }
    )


def _request(credential_id: bytes, extensions: dict[str, Any]) -> PublicKeyCredentialRequestOptions:
    return PublicKeyCredentialRequestOptions.from_dict(
        {
            "challenge": websafe_encode(os.urandom(32)),
            "rpId": "example.com",
            "allowCredentials": [{"type": "public-key", "id": websafe_encode(credential_id)}],
            "userVerification": "required",
            "extensions": extensions,
        }
    )


def test_prf_at_creation_through_hmac_secret_mc(device: CtapHidDevice) -> None:
    """fido2 sends hmac-secret-mc only because getInfo lists it; the first output equals a later one."""
    salt = websafe_encode(b"salt-one".ljust(32, b"."))
    made = _client(device).make_credential(_creation({"prf": {"eval": {"first": salt}}}))
    at_creation = dict(made.client_extension_results)["prf"]
    assert at_creation["enabled"] is True
    first = at_creation["results"]["first"]
    got = _client(device).get_assertion(_request(made.raw_id, {"prf": {"eval": {"first": salt}}}))
    assert dict(got.get_response(0).client_extension_results)["prf"]["results"]["first"] == first
    other = websafe_encode(b"salt-two".ljust(32, b"."))
    again = _client(device).get_assertion(_request(made.raw_id, {"prf": {"eval": {"first": other}}}))
    assert dict(again.get_response(0).client_extension_results)["prf"]["results"]["first"] != first


def test_webauthn_large_blob_write_then_read(device: CtapHidDevice) -> None:
    made = _client(device).make_credential(_creation({"largeBlob": {"support": "required"}}))
    assert dict(made.client_extension_results)["largeBlob"] == {"supported": True}
    blob = os.urandom(600)  # more than one CTAPHID report, compressed and encrypted by fido2
    written = _client(device).get_assertion(
        _request(made.raw_id, {"largeBlob": {"write": websafe_encode(blob)}})
    )
    assert dict(written.get_response(0).client_extension_results)["largeBlob"] == {"written": True}
    read = _client(device).get_assertion(_request(made.raw_id, {"largeBlob": {"read": True}}))
    assert websafe_decode(dict(read.get_response(0).client_extension_results)["largeBlob"]["blob"]) == blob


def test_large_blobs_command_checks(device: CtapHidDevice) -> None:
    ctap = Ctap2(device)
    assert ctap.info.options["largeBlobs"] is True
    assert ctap.info.max_large_blob == 4096
    assert LargeBlobs(ctap).read_blob_array() == []
    token = ClientPin(ctap).get_uv_token(ClientPin.PERMISSION.LARGE_BLOB_WRITE)
    bad = cbor.encode([{1: b"x" * 16, 2: b"n" * 12, 3: 1}]) + b"\0" * 16  # wrong checksum
    with pytest.raises(CtapError) as raised:
        ctap.large_blobs(0, set=bad, length=len(bad), pin_uv_protocol=2, pin_uv_param=_auth(token, 0, bad))
    assert raised.value.code == ERR.INTEGRITY_FAILURE
    with pytest.raises(CtapError) as raised:  # a protected key needs a token with the lbw permission
        ctap.large_blobs(0, set=bad, length=len(bad))
    assert raised.value.code == ERR.PUAT_REQUIRED
    with pytest.raises(CtapError) as raised:
        ctap.large_blobs(5, set=b"x", pin_uv_protocol=2, pin_uv_param=_auth(token, 5, b"x"))
    assert raised.value.code == ERR.INVALID_SEQ
    with pytest.raises(CtapError) as raised:
        ctap.large_blobs(
            0, set=b"x" * 17, length=5000, pin_uv_protocol=2, pin_uv_param=_auth(token, 0, b"x" * 17)
        )
    assert raised.value.code == ERR.LARGE_BLOB_STORAGE_FULL
    assert LargeBlobs(ctap).read_blob_array() == []  # nothing half-written
    ctap.reset()


def _auth(token: bytes, offset: int, fragment: bytes) -> bytes:
    message = b"\xff" * 32 + b"\x0c\x00" + struct.pack("<I", offset) + hashlib.sha256(fragment).digest()
    return PinProtocolV2().authenticate(token, message)


def test_reset_empties_the_large_blob_array(device: CtapHidDevice) -> None:
    made = _client(device).make_credential(_creation({"largeBlob": {"support": "required"}}))
    write = {"largeBlob": {"write": websafe_encode(b"data")}}
    _client(device).get_assertion(_request(made.raw_id, write)).get_response(0)  # fido2 writes here
    ctap = Ctap2(device)
    assert LargeBlobs(ctap).read_blob_array() != []
    ctap.reset()
    assert LargeBlobs(ctap).read_blob_array() == []


def test_large_blob_key_needs_a_discoverable_credential(device: CtapHidDevice) -> None:
    ctap = Ctap2(device)
    for extensions, options in (
        ({"largeBlobKey": True}, {}),
        ({"largeBlobKey": False}, {"rk": True, "uv": True}),
    ):
        with pytest.raises(CtapError) as raised:
            ctap.make_credential(CDH, RP, {"id": b"u"}, ES256, extensions=extensions, options=options)
        assert raised.value.code == ERR.INVALID_OPTION


def test_third_party_payment_flag(device: CtapHidDevice) -> None:
    ctap = Ctap2(device)
    payment = ctap.make_credential(CDH, RP, {"id": b"p"}, ES256, extensions={"thirdPartyPayment": True})
    plain = ctap.make_credential(CDH, RP, {"id": b"q"}, ES256)
    for made, expected in ((payment, True), (plain, False)):
        allow = [{"type": "public-key", "id": made.auth_data.credential_data.credential_id}]
        got = ctap.get_assertion("example.com", CDH, allow, extensions={"thirdPartyPayment": True})
        assert got.auth_data.extensions == {"thirdPartyPayment": expected}
        assert ctap.get_assertion("example.com", CDH, allow).auth_data.extensions is None
