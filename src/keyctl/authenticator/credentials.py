"""Credential keys (ES256, EdDSA) and stateless credential IDs.

A credential ID is ``0x01 || nonce(12) || AES-GCM(wrap_key, nonce, payload, aad=rpIdHash)``; the payload
holds the algorithm, flags, the private key, the rpIdHash and an optional credBlob. A foreign, tampered
or other-RP ID fails to decrypt and is simply not ours.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ID_VERSION = 1
NONCE_SIZE = 12
MAX_CRED_BLOB = 32
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class Alg(IntEnum):
    ES256 = -7
    EDDSA = -8


PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def generate_private(alg: Alg, random32: bytes) -> bytes:
    """A private key (32 raw bytes) from 32 random bytes."""
    if alg is Alg.ES256:
        scalar = int.from_bytes(random32, "big") % (_P256_ORDER - 1) + 1
        return scalar.to_bytes(32, "big")
    return random32


def load_private(alg: Alg, private: bytes) -> PrivateKey:
    if alg is Alg.ES256:
        return ec.derive_private_key(int.from_bytes(private, "big"), ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.from_private_bytes(private)


def cose_public_key(alg: Alg, key: PrivateKey) -> dict[int, Any]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = key.public_key().public_numbers()
        return {
            1: 2,
            3: int(alg),
            -1: 1,
            -2: numbers.x.to_bytes(32, "big"),
            -3: numbers.y.to_bytes(32, "big"),
        }
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {1: 1, 3: int(alg), -1: 6, -2: raw}


def sign(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, _ECDSA_SHA256)
    return key.sign(data)


def large_blob_key(wrap_key: bytes, credential_id: bytes) -> bytes:
    """The largeBlobKey of a credential, derived so no record has to carry it; a reset replaces it."""
    return hmac.new(wrap_key, b"largeBlobKey" + credential_id, hashlib.sha256).digest()


def cred_random(wrap_key: bytes, private: bytes, uv: bool) -> bytes:
    """The hmac-secret CredRandom of a credential, derived so no ID or record has to carry it."""
    label = b"hmac-secret-uv" if uv else b"hmac-secret"
    return hmac.new(wrap_key, label + private, hashlib.sha256).digest()


@dataclass(frozen=True)
class WrappedKey:
    """What a credential ID carries."""

    alg: Alg
    private: bytes
    rp_id_hash: bytes
    resident: bool
    cred_protect: int
    hmac_secret: bool
    cred_blob: bytes
    large_blob_key: bool = False  # made with the largeBlobKey extension
    third_party_payment: bool = False


def wrap(wrap_key: bytes, nonce: bytes, item: WrappedKey) -> bytes:
    flags = (1 if item.resident else 0) | (item.cred_protect & 0x3) << 1 | (0x8 if item.hmac_secret else 0)
    flags |= (0x10 if item.large_blob_key else 0) | (0x20 if item.third_party_payment else 0)
    alg_byte = 1 if item.alg is Alg.ES256 else 2
    payload = bytes([alg_byte, flags]) + item.private + item.rp_id_hash + bytes([len(item.cred_blob)])
    payload += item.cred_blob
    sealed = AESGCM(wrap_key).encrypt(nonce, payload, item.rp_id_hash)
    return bytes([ID_VERSION]) + nonce + sealed


def unwrap(wrap_key: bytes, credential_id: bytes, rp_id_hash: bytes) -> WrappedKey | None:
    """The wrapped key if ``credential_id`` is one of ours for this RP, else None."""
    if len(credential_id) < 1 + NONCE_SIZE + 16 + 67 or credential_id[0] != ID_VERSION:
        return None
    nonce, sealed = credential_id[1 : 1 + NONCE_SIZE], credential_id[1 + NONCE_SIZE :]
    try:
        payload = AESGCM(wrap_key).decrypt(nonce, sealed, rp_id_hash)
    except InvalidTag:
        return None
    alg_byte, flags = payload[0], payload[1]
    private, inner_hash, blob_len = payload[2:34], payload[34:66], payload[66]
    if inner_hash != rp_id_hash or alg_byte not in (1, 2) or len(payload) != 67 + blob_len:
        return None
    return WrappedKey(
        alg=Alg.ES256 if alg_byte == 1 else Alg.EDDSA,
        private=private,
        rp_id_hash=inner_hash,
        resident=bool(flags & 1),
        cred_protect=(flags >> 1) & 0x3,
        hmac_secret=bool(flags & 0x8),
        cred_blob=payload[67:],
        large_blob_key=bool(flags & 0x10),
        third_party_payment=bool(flags & 0x20),
    )
