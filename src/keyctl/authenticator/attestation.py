"""Attestation: a per-authenticator CA, the attestation certificate it issues, packed statements."""

from __future__ import annotations

import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

from keyctl.authenticator.credentials import Alg, PrivateKey, sign
from keyctl.authenticator.state import AttestationMode, AuthenticatorState

AAGUID_OID = ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")  # id-fido-gen-ce-aaguid
_VALIDITY = datetime.timedelta(days=365 * 20)


def _der(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str, unit: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "keyctl"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_attestation_pki(aaguid: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(CA key, CA cert, attestation key, attestation cert), keys as PKCS#8 DER, certificates as DER."""
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"keyctl virtual authenticator CA {aaguid.hex()[:8]}", "Attestation CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    att_key = ec.generate_private_key(ec.SECP256R1())
    att_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("keyctl virtual authenticator", "Authenticator Attestation"))
        .issuer_name(ca_name)
        .public_key(att_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.UnrecognizedExtension(AAGUID_OID, b"\x04\x10" + aaguid), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return (
        _der(ca_key),
        ca_cert.public_bytes(serialization.Encoding.DER),
        _der(att_key),
        att_cert.public_bytes(serialization.Encoding.DER),
    )


def ca_certificate_pem(state: AuthenticatorState) -> str:
    return x509.load_der_x509_certificate(state.ca_cert).public_bytes(serialization.Encoding.PEM).decode()


def _enterprise_identity(state: AuthenticatorState) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """The key and certificate of enterprise attestation: unlike the batch certificate, its subject names
    this one device (a serial number), so an enterprise can tie registrations to the key it handed out.
    Issued by the same CA on first use and kept in the state."""
    if state.enterprise_key is None or state.enterprise_cert is None:
        ca_key = serialization.load_der_private_key(state.ca_key, None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca_cert = x509.load_der_x509_certificate(state.ca_cert)
        key = ec.generate_private_key(ec.SECP256R1())
        serial = x509.random_serial_number()
        now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
        subject = x509.Name(
            [
                *_name("keyctl virtual authenticator", "Authenticator Attestation"),
                x509.NameAttribute(NameOID.SERIAL_NUMBER, f"{serial:040x}"),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.UnrecognizedExtension(AAGUID_OID, b"\x04\x10" + state.aaguid), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        state.enterprise_key = _der(key)
        state.enterprise_cert = cert.public_bytes(serialization.Encoding.DER)
    loaded = serialization.load_der_private_key(state.enterprise_key, None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    return loaded, state.enterprise_cert


def statement(
    state: AuthenticatorState,
    alg: Alg,
    credential_key: PrivateKey,
    auth_data: bytes,
    client_data_hash: bytes,
    enterprise: bool,
) -> tuple[str, dict[str, Any]]:
    """(fmt, attStmt) for a new credential; enterprise attestation uses the device-identifying certificate."""
    signed = auth_data + client_data_hash
    if enterprise:
        device_key, device_cert = _enterprise_identity(state)
        return "packed", {"alg": int(Alg.ES256), "sig": sign(device_key, signed), "x5c": [device_cert]}
    mode = state.attestation
    if mode is AttestationMode.NONE:
        return "none", {}
    if mode is AttestationMode.SELF:
        return "packed", {"alg": int(alg), "sig": sign(credential_key, signed)}
    key = serialization.load_der_private_key(state.attestation_key, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return "packed", {"alg": int(Alg.ES256), "sig": sign(key, signed), "x5c": [state.attestation_cert]}


def attestation_key(state: AuthenticatorState) -> ec.EllipticCurvePrivateKey:
    """The key of the batch attestation certificate (U2F registrations sign with it)."""
    key = serialization.load_der_private_key(state.attestation_key, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def self_signed_certificate(key: ec.EllipticCurvePrivateKey) -> bytes:
    """A certificate of the credential key signed by itself: U2F's form of self attestation."""
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    name = _name("keyctl virtual authenticator (self attestation)", "Authenticator Attestation")
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
