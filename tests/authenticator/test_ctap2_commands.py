"""CTAP 2.1 commands through fido2's Ctap2 over both transports."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
from fido2.attestation import AttestationType, InvalidSignature, PackedAttestation
from fido2.client import DefaultClientDataCollector, Fido2Client
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.hid import CtapHidDevice
from fido2.utils import websafe_decode, websafe_encode
from fido2.webauthn import PublicKeyCredentialRequestOptions

from keyctl.authenticator import AttestationMode, CounterMode, FakeClock, VirtualAuthenticator, new_state
from keyctl.authenticator.ports import UvMode
from tests.authenticator import rp
from tests.authenticator.conftest import Transport

ERR = CtapError.ERR
RP = {"id": "example.com", "name": "Example"}
ES256 = [{"type": "public-key", "alg": -7}]
CDH = hashlib.sha256(b"client data").digest()


def make(ctap: Ctap2, user: bytes = b"user-1", *, rp_id: str = "example.com", **kw: Any) -> Any:
    """A non-discoverable ES256 credential (keyword arguments go to Ctap2.make_credential)."""
    return ctap.make_credential(
        CDH,
        {"id": rp_id, "name": rp_id},
        {"id": user, "name": user.decode(), "displayName": "User " + user.decode()},
        ES256,
        **kw,
    )


def test_get_info_describes_a_ctap21_key(device: CtapHidDevice, authenticator: VirtualAuthenticator) -> None:
    info = Ctap2(device).get_info()
    assert info.versions == ["U2F_V2", "FIDO_2_0", "FIDO_2_1"]
    assert set(info.extensions) == {
        "credProtect",
        "hmac-secret",
        "minPinLength",
        "credBlob",
        "hmac-secret-mc",
        "largeBlobKey",
        "thirdPartyPayment",
    }
    for option in ("rk", "up", "uv", "pinUvAuthToken", "credMgmt", "makeCredUvNotRqd"):
        assert info.options[option] is True, option
    assert info.options["clientPin"] is False
    assert info.pin_uv_protocols == [2, 1]
    assert {a["alg"] for a in info.algorithms} == {-7, -8}
    assert info.max_msg_size == 7609
    assert info.min_pin_length == 4
    assert info.remaining_disc_creds == 100
    assert info.firmware_version > 0
    with authenticator.store.transaction() as state:
        assert bytes(info.aaguid) == state.aaguid


def test_exclude_list_answers_credential_excluded(device: CtapHidDevice) -> None:
    ctap = Ctap2(device)
    made = make(ctap)
    descriptor = {"type": "public-key", "id": made.auth_data.credential_data.credential_id}
    with pytest.raises(CtapError) as raised:
        make(ctap, exclude_list=[descriptor])
    assert raised.value.code == ERR.CREDENTIAL_EXCLUDED
    # the same ID excludes nothing for another RP
    make(ctap, rp_id="other.example", exclude_list=[descriptor])


def test_foreign_and_tampered_credential_ids_are_not_found(device: CtapHidDevice) -> None:
    ctap = Ctap2(device)
    credential_id = make(ctap).auth_data.credential_data.credential_id
    other = Ctap2(rp_transportless_device())
    foreign_id = make(other).auth_data.credential_data.credential_id
    tampered = bytearray(credential_id)
    tampered[20] ^= 0x40
    for bad in (foreign_id, bytes(tampered), os.urandom(len(credential_id))):
        with pytest.raises(CtapError) as raised:
            ctap.get_assertion("example.com", CDH, [{"type": "public-key", "id": bad}])
        assert raised.value.code == ERR.NO_CREDENTIALS
    with pytest.raises(CtapError) as raised:  # right ID, wrong RP
        ctap.get_assertion("other.example", CDH, [{"type": "public-key", "id": credential_id}])
    assert raised.value.code == ERR.NO_CREDENTIALS


def rp_transportless_device() -> CtapHidDevice:
    from keyctl.hid.inprocess import connect

    return connect(VirtualAuthenticator())


def test_discoverable_credentials_and_get_next_assertion(device: CtapHidDevice) -> None:
    ctap = Ctap2(device)
    ids = []
    for user in (b"u1", b"u2", b"u3"):
        made = ctap.make_credential(
            CDH, RP, {"id": user, "name": user.decode()}, ES256, options={"rk": True, "uv": True}
        )
        ids.append(made.auth_data.credential_data.credential_id)
    assertions = ctap.get_assertions("example.com", CDH, options={"uv": True})
    assert len(assertions) == 3
    assert assertions[0].number_of_credentials == 3
    assert [a.credential["id"] for a in assertions] == ids[::-1]  # newest first
    assert [a.user["id"] for a in assertions] == [b"u3", b"u2", b"u1"]
    assert assertions[0].user["name"] == "u3"  # with UV, the user's name is returned
    counters = [a.auth_data.counter for a in assertions]
    assert counters == sorted(counters)
    assert len(set(counters)) == 3
    with pytest.raises(CtapError) as raised:
        ctap.get_next_assertion()
    assert raised.value.code == ERR.NOT_ALLOWED


def test_same_user_replaces_its_discoverable_credential(device: CtapHidDevice) -> None:
    ctap = Ctap2(device)
    for _ in range(2):
        ctap.make_credential(
            CDH, RP, {"id": b"same", "name": "same"}, ES256, options={"rk": True, "uv": True}
        )
    assert len(ctap.get_assertions("example.com", CDH, options={"uv": True})) == 1
    assert ctap.get_info().remaining_disc_creds == 99


def test_up_false_gives_an_assertion_without_the_up_flag(device: CtapHidDevice) -> None:
    ctap = Ctap2(device)
    credential_id = make(ctap).auth_data.credential_data.credential_id
    allow = [{"type": "public-key", "id": credential_id}]
    silent = ctap.get_assertion("example.com", CDH, allow, options={"up": False})
    assert not silent.auth_data.is_user_present()
    touched = ctap.get_assertion("example.com", CDH, allow)
    assert touched.auth_data.is_user_present()
    assert not touched.auth_data.is_user_verified()
    with pytest.raises(CtapError) as raised:
        make(ctap, options={"up": False})
    assert raised.value.code == ERR.INVALID_OPTION


def test_unsupported_algorithm_and_missing_parameters(device: CtapHidDevice) -> None:
    ctap = Ctap2(device)
    with pytest.raises(CtapError) as raised:
        ctap.make_credential(CDH, RP, {"id": b"u"}, [{"type": "public-key", "alg": -257}])
    assert raised.value.code == ERR.UNSUPPORTED_ALGORITHM
    with pytest.raises(CtapError) as raised:
        ctap.send_cbor(Ctap2.CMD.MAKE_CREDENTIAL, {1: CDH, 2: RP})
    assert raised.value.code == ERR.MISSING_PARAMETER
    with pytest.raises(CtapError) as raised:
        ctap.send_cbor(Ctap2.CMD.GET_ASSERTION, {1: 42, 2: CDH})
    assert raised.value.code == ERR.CBOR_UNEXPECTED_TYPE


def test_unknown_command_and_malformed_cbor(device: CtapHidDevice) -> None:
    from fido2.hid import CTAPHID

    assert device.call(CTAPHID.CBOR, b"\x55") == bytes([ERR.INVALID_COMMAND])
    assert device.call(CTAPHID.CBOR, b"\x02\xa1\x01") == bytes([ERR.INVALID_CBOR])  # truncated map
    assert device.call(CTAPHID.CBOR, b"\x02\x9f\xff") == bytes([ERR.INVALID_CBOR])  # indefinite length
    assert device.call(CTAPHID.CBOR, b"\x02\x01") == bytes([ERR.CBOR_UNEXPECTED_TYPE])  # not a map


@pytest.mark.parametrize(
    "payload",
    [
        b"\xa2\x01\x01\x01\x02",  # duplicate map key
        b"\xa1\x01\xf9\x3c\x00",  # a float
        b"\xa1\x01\xc0\x00",  # a tag
        b"\xa1\x01\x01\x00",  # trailing bytes
        b"\xa1\x01" + b"\x81" * 20 + b"\x00",  # nested deeper than CTAP allows
        b"\xa1\x01\x62\xff\xfe",  # invalid UTF-8
        b"\xa1\x01\x5a\xff\xff\xff\xff",  # a byte string longer than the message
    ],
)
def test_strict_cbor_decoding(device: CtapHidDevice, payload: bytes) -> None:
    from fido2.hid import CTAPHID

    assert device.call(CTAPHID.CBOR, b"\x02" + payload) == bytes([ERR.INVALID_CBOR])


def test_eddsa_credential_signs(device: CtapHidDevice) -> None:
    registered = rp.register(device, algs=[-8])
    challenge, options = rp.request_options([registered.credential_id])
    assert rp.verify_assertion(rp.authenticate_response(device, options), challenge, registered, 0) > 0


@pytest.mark.parametrize(
    ("mode", "expect"),
    [(CounterMode.ZERO, "zero"), (CounterMode.PER_CREDENTIAL, "per"), (CounterMode.GLOBAL, "global")],
)
def test_counter_modes(transport: Transport, mode: CounterMode, expect: str) -> None:
    ctap = Ctap2(transport(VirtualAuthenticator(new_state(counter_mode=mode))))
    first = make(ctap, b"a").auth_data.credential_data.credential_id
    second = make(ctap, b"b").auth_data.credential_data.credential_id
    counts = {}
    for name, credential_id in (("a", first), ("b", second), ("a2", first)):
        allow = [{"type": "public-key", "id": credential_id}]
        counts[name] = ctap.get_assertion("example.com", CDH, allow).auth_data.counter
    if expect == "zero":
        assert counts == {"a": 0, "b": 0, "a2": 0}
    elif expect == "per":
        assert counts == {"a": 2, "b": 2, "a2": 3}  # makeCredential counted 1 for each
    else:
        assert counts["a"] < counts["b"] < counts["a2"]


def test_cred_protect_required_hides_the_credential_without_uv(device: CtapHidDevice) -> None:
    ctap = Ctap2(device)
    made = ctap.make_credential(
        CDH, RP, {"id": b"p"}, ES256, extensions={"credProtect": 3}, options={"rk": True, "uv": True}
    )
    assert made.auth_data.extensions == {"credProtect": 3}
    allow = [{"type": "public-key", "id": made.auth_data.credential_data.credential_id}]
    with pytest.raises(CtapError) as raised:
        ctap.get_assertion("example.com", CDH, allow)
    assert raised.value.code == ERR.NO_CREDENTIALS
    assert ctap.get_assertion("example.com", CDH, allow, options={"uv": True}).auth_data.is_user_verified()


def test_cred_blob_is_stored_and_returned(device: CtapHidDevice) -> None:
    ctap = Ctap2(device)
    blob = b"ci-job-42"
    made = ctap.make_credential(
        CDH, RP, {"id": b"b"}, ES256, extensions={"credBlob": blob}, options={"rk": True, "uv": True}
    )
    assert made.auth_data.extensions == {"credBlob": True}
    got = ctap.get_assertion("example.com", CDH, extensions={"credBlob": True}, options={"uv": True})
    assert got.auth_data.extensions == {"credBlob": blob}
    too_big = make(ctap, b"c", extensions={"credBlob": b"x" * 33})
    assert too_big.auth_data.extensions == {"credBlob": False}


def test_prf_through_fido2_client_is_stable_per_credential_and_salt(device: CtapHidDevice) -> None:
    registered = rp.register(device, user_verification="required", extensions={"prf": {}})
    assert registered.verified is not None

    def prf(salt: bytes) -> bytes:
        _, options = rp.request_options([registered.credential_id], user_verification="required")
        options["extensions"] = {"prf": {"eval": {"first": websafe_encode(salt)}}}
        client = Fido2Client(device, DefaultClientDataCollector(rp.ORIGIN))
        result = client.get_assertion(PublicKeyCredentialRequestOptions.from_dict(options))
        outputs = result.get_response(0).client_extension_results
        return websafe_decode(outputs["prf"]["results"]["first"])

    first = prf(b"salt one")
    assert len(first) == 32
    assert prf(b"salt one") == first
    assert prf(b"salt two") != first


def test_built_in_uv_failure_is_uv_invalid(transport: Transport) -> None:
    ctap = Ctap2(transport(VirtualAuthenticator(new_state(uv=UvMode.DENY))))
    with pytest.raises(CtapError) as raised:
        make(ctap, options={"uv": True})
    assert raised.value.code == ERR.UV_INVALID


def test_self_attestation_statement_is_signed_by_the_credential(transport: Transport) -> None:
    ctap = Ctap2(transport(VirtualAuthenticator(new_state(attestation_mode=AttestationMode.SELF))))
    made = make(ctap)
    assert made.fmt == "packed"
    assert "x5c" not in made.att_stmt
    result = PackedAttestation().verify(made.att_stmt, made.auth_data, CDH)  # raises when the sig is bad
    assert result.attestation_type == AttestationType.SELF
    with pytest.raises(InvalidSignature):
        PackedAttestation().verify(made.att_stmt, made.auth_data, hashlib.sha256(b"other").digest())


def test_get_next_assertion_expires(transport: Transport) -> None:
    clock = FakeClock()
    ctap = Ctap2(transport(VirtualAuthenticator(clock=clock)))
    for user in (b"x1", b"x2"):
        ctap.make_credential(CDH, RP, {"id": user}, ES256, options={"rk": True, "uv": True})
    first = ctap.get_assertion("example.com", CDH, options={"uv": True})
    assert first.number_of_credentials == 2
    clock.advance(31)
    with pytest.raises(CtapError) as raised:
        ctap.get_next_assertion()
    assert raised.value.code == ERR.NOT_ALLOWED
    ctap.get_assertion("example.com", CDH, options={"uv": True})
    ctap.get_info()  # any other command ends the sequence
    with pytest.raises(CtapError) as raised:
        ctap.get_next_assertion()
    assert raised.value.code == ERR.NOT_ALLOWED


def test_a_credential_made_without_rk_is_not_discoverable_and_its_id_fits_get_info(
    device: CtapHidDevice,
) -> None:
    """A security key stores nothing for a non-discoverable credential, and the ID it hands out is no
    longer than the maxCredentialIdLength it advertises (hosts drop longer IDs from allow lists)."""
    ctap = Ctap2(device)
    made = make(ctap)
    with pytest.raises(CtapError) as nothing_stored:
        ctap.get_assertion("example.com", CDH)
    assert nothing_stored.value.code == ERR.NO_CREDENTIALS
    credential_id = made.auth_data.credential_data.credential_id
    assert ctap.get_info().max_cred_id_length is not None
    assert len(credential_id) <= ctap.get_info().max_cred_id_length
