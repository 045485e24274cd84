"""A small software authenticator for the server's tests, written from the WebAuthn spec with
`cryptography` and a hand-rolled CBOR encoder, sharing no code with keyctl's client side or with
python-fido2 (which the server uses): ES256 credentials, "none" attestation, and switches to craft
tampered responses (foreign origin, wrong rpIdHash, counter, type, flags, signature)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes([major << 5 | value])
    for info, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if value < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | info]) + struct.pack(fmt, value)
    raise ValueError(value)


def cbor(value: Any) -> bytes:
    """Canonical-enough CBOR for the few types WebAuthn needs (ints, bytes, text, maps)."""
    if isinstance(value, bool):
        return b"\xf5" if value else b"\xf4"
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if isinstance(value, bytes):
        return _head(2, len(value)) + value
    if isinstance(value, str):
        raw = value.encode()
        return _head(3, len(raw)) + raw
    if isinstance(value, dict):
        return _head(5, len(value)) + b"".join(cbor(k) + cbor(v) for k, v in value.items())
    raise TypeError(type(value))


@dataclass
class Credential:
    id: bytes
    key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    counter: int = 0


class Excluded(Exception):
    """The authenticator holds a credential listed in excludeCredentials (CREDENTIAL_EXCLUDED)."""


class NoCredential(Exception):
    pass


class SoftAuthenticator:
    def __init__(self, origin: str, aaguid: bytes = bytes(16), backup: bool = False) -> None:
        self.origin = origin
        self.aaguid = aaguid
        self.backup = backup
        self.credentials: dict[bytes, Credential] = {}

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin or self.origin, "crossOrigin": False}
        ).encode()

    def create(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        kind: str = "webauthn.create",
        flags: int | None = None,
        check_exclude: bool = True,
        transports: tuple[str, ...] = ("usb",),
        credential_id: bytes | None = None,
        cose_key: dict[int, Any] | None = None,
    ) -> dict[str, Any]:
        """A RegistrationResponseJSON for PublicKeyCredentialCreationOptionsJSON (``cose_key``: send this
        public key instead of the credential's own)."""
        if check_exclude and any(
            unb64url(d["id"]) in self.credentials for d in options["excludeCredentials"]
        ):
            raise Excluded
        rp = rp_id or options["rp"]["id"]
        key = ec.generate_private_key(ec.SECP256R1())
        numbers = key.public_key().public_numbers()
        cose = cbor(
            cose_key
            or {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
        )
        credential = Credential(
            credential_id or os.urandom(16), key, options["rp"]["id"], unb64url(options["user"]["id"])
        )
        if flags is None:
            flags = UP | UV | AT | ((BE | BS) if self.backup else 0)
        auth_data = (
            hashlib.sha256(rp.encode()).digest()
            + bytes([flags])
            + struct.pack(">I", credential.counter)
            # attested credential data only with the AT flag, as the spec lays authData out
            + (
                (self.aaguid + struct.pack(">H", len(credential.id)) + credential.id + cose)
                if flags & AT
                else b""
            )
        )
        attestation = cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        self.credentials[credential.id] = credential
        return {
            "id": b64url(credential.id),
            "rawId": b64url(credential.id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(self._client_data(kind, options["challenge"], origin)),
                "attestationObject": b64url(attestation),
                "transports": list(transports),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "cross-platform",
        }

    def get(
        self,
        options: dict[str, Any],
        *,
        credential_id: bytes | None = None,
        origin: str | None = None,
        rp_id: str | None = None,
        kind: str = "webauthn.get",
        counter: int | None = None,
        flags: int = UP | UV,
        user_handle: bytes | None = None,
        bad_signature: bool = False,
    ) -> dict[str, Any]:
        """An AuthenticationResponseJSON for PublicKeyCredentialRequestOptionsJSON."""
        if credential_id is None:
            allowed = [unb64url(d["id"]) for d in options.get("allowCredentials") or []]
            candidates = [
                c
                for c in self.credentials.values()
                if c.rp_id == options["rpId"] and (not allowed or c.id in allowed)
            ]
            if not candidates:
                raise NoCredential
            credential = candidates[-1]
        else:
            credential = self.credentials[credential_id]
        credential.counter = credential.counter + 1 if counter is None else counter
        rp = rp_id or options["rpId"]
        auth_data = (
            hashlib.sha256(rp.encode()).digest() + bytes([flags]) + struct.pack(">I", credential.counter)
        )
        client_data = self._client_data(kind, options["challenge"], origin)
        signature = credential.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        if bad_signature:
            signature = credential.key.sign(b"something else", ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64url(credential.id),
            "rawId": b64url(credential.id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(user_handle if user_handle is not None else credential.user_handle),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "cross-platform",
        }
