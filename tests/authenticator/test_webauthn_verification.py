"""What the virtual authenticator produces through Fido2Client is accepted by py_webauthn."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fido2.client import ClientError
from fido2.hid import CtapHidDevice
from webauthn.helpers.exceptions import InvalidRegistrationResponse

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


@pytest.mark.parametrize("mode", [AttestationMode.SELF, AttestationMode.X5C])
def test_a_registration_is_signed_for_the_rp_that_asked(transport: Transport, mode: AttestationMode) -> None:
    """The authenticator hashes the RP id it was sent into what it signs: py_webauthn accepts the
    credential for that RP and refuses it for another."""
    state = new_state(attestation_mode=mode)
    device = transport(VirtualAuthenticator(state))
    roots = [ca_certificate_pem(state).encode()]
    other = "other.example"
    made_for_other = rp.register(
        device, roots=roots, request_rp_id=other, origin=f"https://{other}", rp_id=other
    )
    assert made_for_other.fmt == "packed"
    with pytest.raises(InvalidRegistrationResponse, match="hash"):
        rp.register(device, roots=roots, request_rp_id=other, origin=f"https://{other}", rp_id=rp.RP_ID)


def test_a_credential_answers_only_for_its_own_rp(device: CtapHidDevice) -> None:
    """A credential ID made for example.com, sent in another RP's allow list, is not ours there, even
    right after it signed for example.com (the authenticator remembers unwrapped IDs)."""
    registered = rp.register(device)
    challenge, options = rp.request_options([registered.credential_id])
    assert rp.verify_assertion(rp.authenticate_response(device, options), challenge, registered, 0) > 0
    options["rpId"] = "other.example"
    with pytest.raises(ClientError) as refused:
        rp.authenticate_response(device, options, origin="https://other.example")
    assert refused.value.code == ClientError.ERR.DEVICE_INELIGIBLE
