"""The device side of PIN/UV auth protocols 1 and 2 (CTAP 2.1 §6.5.6, §6.5.7), and the token state."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import IntFlag
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keyctl.authenticator.status import CtapFailure, Status

PROTOCOLS = (2, 1)
TOKEN_SIZE = 32
TOKEN_MAX_USAGE_S = 600.0  # a token is good for 10 minutes after it was issued


class Permission(IntFlag):
    MAKE_CREDENTIAL = 0x01
    GET_ASSERTION = 0x02
    CREDENTIAL_MGMT = 0x04
    BIO_ENROLL = 0x08
    LARGE_BLOB_WRITE = 0x10
    AUTHENTICATOR_CFG = 0x20


SUPPORTED_PERMISSIONS = (
    Permission.MAKE_CREDENTIAL
    | Permission.GET_ASSERTION
    | Permission.CREDENTIAL_MGMT
    | Permission.BIO_ENROLL
    | Permission.LARGE_BLOB_WRITE
    | Permission.AUTHENTICATOR_CFG
)


def _aes_cbc(key: bytes, iv: bytes, data: bytes, encrypt: bool) -> bytes:
    if len(data) % 16:
        raise CtapFailure(Status.INVALID_LENGTH)
    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    op = cipher.encryptor() if encrypt else cipher.decryptor()
    return op.update(data) + op.finalize()


@dataclass(frozen=True)
class Protocol:
    version: int

    def kdf(self, z: bytes) -> bytes:
        if self.version == 1:
            return hashlib.sha256(z).digest()
        hmac_key, aes_key = (
            HKDF(hashes.SHA256(), 32, b"\0" * 32, info).derive(z)
            for info in (b"CTAP2 HMAC key", b"CTAP2 AES key")
        )
        return hmac_key + aes_key

    def encrypt(self, key: bytes, plaintext: bytes, iv: bytes) -> bytes:
        if self.version == 1:
            return _aes_cbc(key, b"\0" * 16, plaintext, True)
        return iv + _aes_cbc(key[32:], iv, plaintext, True)

    def decrypt(self, key: bytes, ciphertext: bytes) -> bytes:
        if self.version == 1:
            return _aes_cbc(key, b"\0" * 16, ciphertext, False)
        if len(ciphertext) < 16:
            raise CtapFailure(Status.INVALID_LENGTH)
        return _aes_cbc(key[32:], ciphertext[:16], ciphertext[16:], False)

    def authenticate(self, key: bytes, message: bytes) -> bytes:
        mac = hmac.new(key[:32], message, hashlib.sha256).digest()
        return mac[:16] if self.version == 1 else mac

    def verify(self, key: bytes, message: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(self.authenticate(key, message), signature)


def protocol(version: Any) -> Protocol:
    if not isinstance(version, int) or isinstance(version, bool):
        raise CtapFailure(Status.CBOR_UNEXPECTED_TYPE)
    if version not in PROTOCOLS:
        raise CtapFailure(Status.INVALID_PARAMETER)
    return Protocol(version)


class KeyAgreement:
    """The authenticator's ECDH key; regenerated at power-up and after each PIN mismatch."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())

    def cose(self) -> dict[int, Any]:
        numbers = self._key.public_key().public_numbers()
        return {1: 2, 3: -25, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}

    def shared_secret(self, proto: Protocol, peer: Any) -> bytes:
        """ECDH with the platform's COSE key, then the protocol's KDF."""
        if not isinstance(peer, dict):
            raise CtapFailure(Status.CBOR_UNEXPECTED_TYPE)
        x, y = peer.get(-2), peer.get(-3)
        if peer.get(1) != 2 or peer.get(-1) != 1 or not isinstance(x, bytes) or not isinstance(y, bytes):
            raise CtapFailure(Status.INVALID_PARAMETER)
        if len(x) != 32 or len(y) != 32:
            raise CtapFailure(Status.INVALID_PARAMETER)
        try:
            point = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
            ).public_key()
        except ValueError as error:  # not on the curve
            raise CtapFailure(Status.INVALID_PARAMETER) from error
        return proto.kdf(self._key.exchange(ec.ECDH(), point))


@dataclass
class Token:
    """The current pinUvAuthToken and what it may be used for."""

    value: bytes
    permissions: Permission
    rp_id: str | None
    issued_at: float
    # CTAP 2.1 §6.5.2.1 userPresent: set when built-in UV issued the token with the user's touch, so the
    # next makeCredential/getAssertion with it needs no second touch; cleared by that use.
    user_present: bool = False

    def check(self, proto: Protocol, message: bytes, param: bytes, now: float) -> None:
        """Verify a pinUvAuthParam made with this token (PIN_AUTH_INVALID unless it matches)."""
        if now - self.issued_at > TOKEN_MAX_USAGE_S or not proto.verify(self.value, message, param):
            raise CtapFailure(Status.PIN_AUTH_INVALID)

    def require(self, permission: Permission, rp_id: str | None) -> None:
        """The token must carry ``permission``; an rpId-bound token only serves that RP."""
        if not self.permissions & permission:
            raise CtapFailure(Status.PIN_AUTH_INVALID)
        if rp_id is not None:
            if self.rp_id is None:
                self.rp_id = rp_id
            elif self.rp_id != rp_id:
                raise CtapFailure(Status.PIN_AUTH_INVALID)
