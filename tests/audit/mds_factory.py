"""Builds MDS3 blobs shaped like the real service's, signed under a root the tests control."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

YUBIKEY_5 = "cb69481e-8ff7-4039-93ec-0a2729a154a8"
REVOKED_KEY = "11111111-2222-3333-4444-555555555555"
OLD_FIRMWARE_KEY = "66666666-7777-8888-9999-aaaaaaaaaaaa"
UV_BYPASS_KEY = "77777777-8888-4999-aaaa-bbbbbbbbbbbb"
ICON = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_cert(
    subject: str,
    key: Any,
    issuer: str,
    issuer_key: Any,
    ca: bool,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


@dataclass
class Pki:
    """A root, an intermediate and a signing leaf, like GlobalSign R3 → CA → mds3.fidoalliance.org."""

    root_key: Any = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    root: x509.Certificate = field(init=False)
    intermediate_key: Any = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    intermediate: x509.Certificate = field(init=False)
    leaf_key: Any = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    leaf: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        self.root = make_cert("Test MDS Root", self.root_key, "Test MDS Root", self.root_key, ca=True)
        self.intermediate = make_cert(
            "Test MDS CA", self.intermediate_key, "Test MDS Root", self.root_key, True
        )
        self.leaf = make_cert("mds3.test", self.leaf_key, "Test MDS CA", self.intermediate_key, ca=False)

    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@cache
def vendor_attestation_root(vendor: str) -> str:
    """A vendor's self-signed attestation root, base64 DER as metadata statements list it."""
    key = ec.generate_private_key(ec.SECP256R1())
    root = make_cert(f"{vendor} FIDO Root CA", key, f"{vendor} FIDO Root CA", key, ca=True)
    return base64.b64encode(root.public_bytes(serialization.Encoding.DER)).decode()


def entry(aaguid: str, description: str, reports: list[dict[str, Any]], version: int = 5) -> dict[str, Any]:
    return {
        "aaguid": aaguid,
        "metadataStatement": {
            "legalHeader": "test",
            "aaguid": aaguid,
            "description": description,
            "authenticatorVersion": version,
            "protocolFamily": "fido2",
            "schema": 3,
            "upv": [{"major": 1, "minor": 1}],
            "authenticationAlgorithms": ["secp256r1_ecdsa_sha256_raw"],
            "publicKeyAlgAndEncodings": ["cose"],
            "attestationTypes": ["basic_full"],
            "userVerificationDetails": [[{"userVerificationMethod": "presence_internal"}]],
            "keyProtection": ["hardware", "secure_element"],
            "attestationRootCertificates": [vendor_attestation_root(description)],
            "icon": ICON,
            "authenticatorGetInfo": {"versions": ["FIDO_2_0", "FIDO_2_1"], "aaguid": aaguid.replace("-", "")},
        },
        "statusReports": reports,
        "timeOfLastStatusChange": "2024-01-01",
    }


def standard_entries() -> list[dict[str, Any]]:
    return [
        entry(
            YUBIKEY_5,
            "YubiKey 5 Series",
            [
                {"status": "FIDO_CERTIFIED_L1", "effectiveDate": "2020-05-12"},
                {"status": "FIDO_CERTIFIED_L2", "effectiveDate": "2022-01-01"},
            ],
        ),
        entry(
            REVOKED_KEY,
            "Cloned Key Inc. Token",
            [
                {"status": "FIDO_CERTIFIED_L1", "effectiveDate": "2019-01-01"},
                {"status": "ATTESTATION_KEY_COMPROMISE", "effectiveDate": "2023-03-01"},
                {"status": "REVOKED", "effectiveDate": "2023-04-01"},
            ],
        ),
        entry(
            OLD_FIRMWARE_KEY,
            "Patchable Key",
            [
                {"status": "FIDO_CERTIFIED_L1", "effectiveDate": "2021-01-01"},
                {"status": "UPDATE_AVAILABLE", "effectiveDate": "2024-02-01", "authenticatorVersion": 7},
            ],
            version=5,
        ),
        entry(
            UV_BYPASS_KEY,
            "Bypassable Key",
            [
                {"status": "FIDO_CERTIFIED_L1", "effectiveDate": "2020-01-01"},
                {"status": "USER_VERIFICATION_BYPASS", "effectiveDate": "2024-09-01"},
            ],
        ),
        {
            "aaid": "4e4e#4005",
            "metadataStatement": {"description": "UAF authenticator", "protocolFamily": "uaf"},
            "statusReports": [{"status": "FIDO_CERTIFIED", "effectiveDate": "2016-01-01"}],
        },
        {
            "attestationCertificateKeyIdentifiers": ["bf7bcaa0d0c6187a8c6abbdd16a15640e7c7bde2"],
            "metadataStatement": {"description": "Old U2F key", "protocolFamily": "u2f"},
            "statusReports": [{"status": "FIDO_CERTIFIED", "effectiveDate": "2017-01-01"}],
        },
    ]


def sign_blob(
    pki: Pki,
    entries: list[dict[str, Any]] | None = None,
    serial: int = 42,
    next_update: str | None = None,
    alg: str = "RS256",
) -> bytes:
    payload = {
        "legalHeader": "Retrieval and use of this BLOB indicates acceptance of the test terms.",
        "no": serial,
        "nextUpdate": next_update or (datetime.now(UTC) + timedelta(days=30)).date().isoformat(),
        "entries": standard_entries() if entries is None else entries,
    }
    chain = [pki.leaf, pki.intermediate]
    header = {
        "alg": alg,
        "typ": "JWT",
        "x5c": [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain],
    }
    signed = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(payload).encode())}".encode()
    if alg == "RS256":
        signature = pki.leaf_key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = decode_dss_signature(pki.leaf_key.sign(signed, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return signed + b"." + _b64url(signature).encode()
