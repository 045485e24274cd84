"""authenticatorLargeBlobs (0x0C): the serialized large-blob array that WebAuthn's largeBlob extension
keeps, read and written in fragments (CTAP 2.1 §6.10)."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

from keyctl.authenticator import params
from keyctl.authenticator.commands.common import check_pin_uv_auth
from keyctl.authenticator.device import Device, LargeBlobWrite
from keyctl.authenticator.pin import Permission
from keyctl.authenticator.ports import Link
from keyctl.authenticator.state import AuthenticatorState
from keyctl.authenticator.status import CtapFailure, Status

MAX_SERIALIZED_ARRAY = 4096  # getInfo maxSerializedLargeBlobArray
MAX_FRAGMENT = 7609 - 64  # maxMsgSize - 64
HASH_SIZE = 16  # the array ends with the first 16 bytes of its SHA-256


def handle(
    device: Device, state: AuthenticatorState, raw: dict[Any, Any], link: Link
) -> dict[int, Any] | None:
    get = params.optional(raw, 1, int)
    fragment = params.optional(raw, 2, bytes)
    offset = params.required(raw, 3, int)
    length = params.optional(raw, 4, int)
    if (get is None) == (fragment is None) or offset < 0:
        raise CtapFailure(Status.INVALID_PARAMETER)
    if get is not None:
        if length is not None:
            raise CtapFailure(Status.INVALID_PARAMETER)
        if get > MAX_FRAGMENT or get < 0:
            raise CtapFailure(Status.INVALID_LENGTH)
        if offset > len(state.large_blob_array):
            raise CtapFailure(Status.INVALID_PARAMETER)
        return {1: state.large_blob_array[offset : offset + get]}
    assert fragment is not None
    if len(fragment) > MAX_FRAGMENT:
        raise CtapFailure(Status.INVALID_LENGTH)
    if offset == 0:
        if length is None:
            raise CtapFailure(Status.INVALID_PARAMETER)
        if length > MAX_SERIALIZED_ARRAY:
            raise CtapFailure(Status.LARGE_BLOB_STORAGE_FULL)
        if length < HASH_SIZE + 1:
            raise CtapFailure(Status.INVALID_PARAMETER)
        device.large_blob_write = LargeBlobWrite(length)
    elif length is not None:
        raise CtapFailure(Status.INVALID_PARAMETER)
    pending = device.large_blob_write
    if pending is None or offset != len(pending.received):
        raise CtapFailure(Status.INVALID_SEQ)
    pin_uv_param = params.optional(raw, 5, bytes)
    if pin_uv_param is not None or device.protected(state) or state.always_uv:
        message = b"\xff" * 32 + b"\x0c\x00" + struct.pack("<I", offset) + hashlib.sha256(fragment).digest()
        protocol = params.optional(raw, 6, int)
        check_pin_uv_auth(device, protocol, pin_uv_param, message, Permission.LARGE_BLOB_WRITE)
    if offset + len(fragment) > pending.length:
        raise CtapFailure(Status.INVALID_PARAMETER)
    pending.received += fragment
    if len(pending.received) == pending.length:
        device.large_blob_write = None
        array, checksum = bytes(pending.received[:-HASH_SIZE]), bytes(pending.received[-HASH_SIZE:])
        if hashlib.sha256(array).digest()[:HASH_SIZE] != checksum:
            raise CtapFailure(Status.INTEGRITY_FAILURE)
        state.large_blob_array = bytes(pending.received)
    return None
