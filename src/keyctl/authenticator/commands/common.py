"""Pieces the commands share: authenticator data, credential lookup, pinUvAuthParam checks."""

from __future__ import annotations

import functools
import hashlib
import hmac
import struct
from typing import Any

from keyctl.authenticator import cbor, credentials, params, pin
from keyctl.authenticator.credentials import WrappedKey
from keyctl.authenticator.device import Device, HmacSecretRequest
from keyctl.authenticator.state import AuthenticatorState, ResidentCredential
from keyctl.authenticator.status import CtapFailure, Status

FLAG_UP = 0x01
FLAG_UV = 0x04
FLAG_BE = 0x08  # backup eligible: the credential may be copied to other devices (a synced passkey)
FLAG_BS = 0x10  # backup state: it has been
FLAG_AT = 0x40
FLAG_ED = 0x80


def check_pin_uv_auth(
    device: Device,
    protocol: int | None,
    pin_uv_param: bytes | None,
    message: bytes,
    permission: pin.Permission,
    rp_id: str | None = None,
) -> pin.Token:
    """Check a command's pinUvAuthParam over ``message`` against the current PIN/UV token, its
    permission and (when given) its RP binding."""
    if pin_uv_param is None:
        raise CtapFailure(Status.PUAT_REQUIRED)
    if protocol is None:
        raise CtapFailure(Status.MISSING_PARAMETER)
    proto = pin.protocol(protocol)
    token = device.token
    if token is None:
        raise CtapFailure(Status.PIN_AUTH_INVALID)
    token.check(proto, message, pin_uv_param, device.clock.monotonic())
    token.require(permission, rp_id)
    return token


@functools.lru_cache(maxsize=256)  # the same few RP IDs come back in every request
def rp_id_hash(rp_id: str) -> bytes:
    return hashlib.sha256(rp_id.encode()).digest()


def auth_data(
    rp_hash: bytes,
    *,
    up: bool,
    uv: bool,
    counter: int,
    attested: bytes | None = None,
    extensions: dict[str, Any] | None = None,
    synced: bool = False,
) -> bytes:
    flags = (FLAG_UP if up else 0) | (FLAG_UV if uv else 0) | (FLAG_BE | FLAG_BS if synced else 0)
    flags |= (FLAG_AT if attested is not None else 0) | (FLAG_ED if extensions else 0)
    data = rp_hash + struct.pack(">BI", flags, counter & 0xFFFFFFFF)
    if attested is not None:
        data += attested
    if extensions:
        data += cbor.encode(extensions)
    return data


def find_resident(state: AuthenticatorState, credential_id: bytes) -> ResidentCredential | None:
    for credential in state.credentials:
        if credential.credential_id == credential_id:
            return credential
    return None


def lookup(
    device: Device, state: AuthenticatorState, credential_id: bytes, rp_id: str
) -> tuple[WrappedKey, ResidentCredential | None] | None:
    """A credential of ours for this RP: (key, resident record or None), or None when it is not ours.

    A discoverable credential that was deleted is not ours any more, though its ID still unwraps.
    """
    wrapped = device.unwrap(state, credential_id, rp_id_hash(rp_id))
    if wrapped is None:
        return None
    if not wrapped.resident:
        return wrapped, None
    record = find_resident(state, credential_id)
    if record is None or record.rp_id != rp_id:
        return None
    return wrapped, record


def hmac_secret_request(device: Device, value: Any) -> HmacSecretRequest:
    """The hmac-secret (getAssertion) or hmac-secret-mc (makeCredential) input: salts, decrypted."""
    if not isinstance(value, dict):
        raise CtapFailure(Status.CBOR_UNEXPECTED_TYPE)
    key_agreement = params.required(value, 1, dict)
    salt_enc = params.required(value, 2, bytes)
    salt_auth = params.required(value, 3, bytes)
    proto = pin.protocol(value.get(4, 1))
    shared = device.key_agreement.shared_secret(proto, key_agreement)
    if not proto.verify(shared, salt_enc, salt_auth):
        raise CtapFailure(Status.PIN_AUTH_INVALID)
    salts = proto.decrypt(shared, salt_enc)
    if len(salts) not in (32, 64):
        raise CtapFailure(Status.INVALID_LENGTH)
    return HmacSecretRequest(proto, shared, (salts[:32], salts[32:]) if len(salts) == 64 else (salts,))


def hmac_secret_output(
    device: Device, state: AuthenticatorState, request: HmacSecretRequest, wrapped: WrappedKey, uv: bool
) -> bytes:
    """HMAC-SHA-256 of each salt under the credential's CredRandom (with or without UV), encrypted."""
    secret = credentials.cred_random(state.wrap_key, wrapped.private, uv)
    output = b"".join(hmac.new(secret, salt, hashlib.sha256).digest() for salt in request.salts)
    return request.protocol.encrypt(request.shared_secret, output, device.rng.random(16))


def large_blob_key_requested(extensions: dict[str, Any]) -> bool:
    """largeBlobKey: true asks for the key; any other value is an invalid option (CTAP 2.1 §12.3)."""
    if "largeBlobKey" not in extensions:
        return False
    if extensions["largeBlobKey"] is not True:
        raise CtapFailure(Status.INVALID_OPTION)
    return True
