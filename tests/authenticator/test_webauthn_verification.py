"""What the virtual authenticator produces through Fido2Client is accepted by py_webauthn."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fido2 import cbor
from fido2.hid import CtapHidDevice
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse

from keyctl.authenticator import AttestationMode, VirtualAuthenticator, new_state
from keyctl.authenticator.attestation import ca_certificate_pem
from tests.authenticator import rp
from tests.authenticator.conftest import Transport

ALGS = {"ES256": -7, "EdDSA": -8}


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize("mode", list(AttestationMode))
def test_registration_and_authentication_verify(
    transport: Transport, mode: AttestationMode, alg: str
) -> None:
    state = new_state(attestation_mode=mode)
    device = transport(VirtualAuthenticator(state))
    roots = [ca_certificate_pem(state).encode()] if mode is AttestationMode.X5C else None
    attestation = "none" if mode is AttestationMode.NONE else "direct"
    registered = rp.register(device, algs=[ALGS[alg]], attestation=attestation, roots=roots)
    assert registered.fmt == ("none" if mode is AttestationMode.NONE else "packed")
    count = registered.sign_count
    for _ in range(2):
        challenge, options = rp.request_options([registered.credential_id])
        response = rp.authenticate_response(device, options)
        new_count = rp.verify_assertion(response, challenge, registered, count)
        assert new_count > count
        count = new_count


def test_x5c_chain_is_rejected_under_a_foreign_ca(transport: Transport) -> None:
    other = new_state(attestation_mode=AttestationMode.X5C)
    mine = new_state(attestation_mode=AttestationMode.X5C)
    x5c_device = transport(VirtualAuthenticator(mine))
    assert rp.register(x5c_device, roots=[ca_certificate_pem(mine).encode()]).fmt == "packed"
    with pytest.raises(InvalidRegistrationResponse):
        rp.register(x5c_device, roots=[ca_certificate_pem(other).encode()])


def test_x5c_certificate_carries_the_aaguid() -> None:
    state = new_state(attestation_mode=AttestationMode.X5C)
    cert = x509.load_der_x509_certificate(state.attestation_cert)
    ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4"))
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    assert ext.value.value == b"\x04\x10" + state.aaguid
    ca = x509.load_pem_x509_certificate(ca_certificate_pem(state).encode())
    cert.verify_directly_issued_by(ca)
    assert ca.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _tamper_attestation_signature(credential: dict[str, Any]) -> None:
    response = credential["response"]
    attestation = cbor.decode(_unb64(response["attestationObject"]))
    signature = bytearray(attestation["attStmt"]["sig"])
    signature[-3] ^= 0x01
    attestation["attStmt"]["sig"] = bytes(signature)
    response["attestationObject"] = _b64(cbor.encode(attestation))


@pytest.mark.parametrize("mode", [AttestationMode.SELF, AttestationMode.X5C])
def test_registration_tampered_or_for_another_origin_or_rp_is_rejected(
    transport: Transport, mode: AttestationMode
) -> None:
    state = new_state(attestation_mode=mode)
    device = transport(VirtualAuthenticator(state))
    roots = [ca_certificate_pem(state).encode()]
    assert rp.register(device, roots=roots).fmt == "packed"
    with pytest.raises(InvalidRegistrationResponse):
        rp.register(device, roots=roots, tamper=_tamper_attestation_signature)
    with pytest.raises(InvalidRegistrationResponse):
        rp.register(device, roots=roots, origin="https://evil.example")
    with pytest.raises(InvalidRegistrationResponse):
        rp.register(device, roots=roots, rp_id="evil.example")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_tampered_signature_wrong_origin_and_wrong_rp_are_rejected(device: CtapHidDevice) -> None:
    registered = rp.register(device)
    challenge, options = rp.request_options([registered.credential_id])
    response = rp.authenticate_response(device, options)
    assert rp.verify_assertion(copy.deepcopy(response), challenge, registered, 0) > 0

    tampered = copy.deepcopy(response)
    signature = bytearray(_unb64(tampered["response"]["signature"]))
    signature[-5] ^= 0x01
    tampered["response"]["signature"] = _b64(bytes(signature))
    with pytest.raises(InvalidAuthenticationResponse):
        rp.verify_assertion(tampered, challenge, registered, 0)
    with pytest.raises(InvalidAuthenticationResponse):
        rp.verify_assertion(copy.deepcopy(response), challenge, registered, 0, origin="https://evil.example")
    with pytest.raises(InvalidAuthenticationResponse):
        rp.verify_assertion(copy.deepcopy(response), challenge, registered, 0, rp_id="evil.example")
