"""authenticatorCredentialManagement (0x0A): metadata, enumerate RPs and credentials, delete, update."""

from __future__ import annotations

import hashlib
from typing import Any

from keyctl.authenticator import cbor, credentials, params, pin
from keyctl.authenticator.commands.common import check_pin_uv_auth, find_resident
from keyctl.authenticator.device import Device, Enumeration
from keyctl.authenticator.pin import Permission
from keyctl.authenticator.ports import Link
from keyctl.authenticator.state import MAX_RESIDENT, AuthenticatorState, ResidentCredential
from keyctl.authenticator.status import CtapFailure, Status

GET_CREDS_METADATA = 0x01
ENUMERATE_RPS_BEGIN = 0x02
ENUMERATE_RPS_NEXT = 0x03
ENUMERATE_CREDENTIALS_BEGIN = 0x04
ENUMERATE_CREDENTIALS_NEXT = 0x05
DELETE_CREDENTIAL = 0x06
UPDATE_USER_INFORMATION = 0x07


def _authorize(
    device: Device,
    sub: int,
    sub_params: dict[Any, Any] | None,
    protocol: int | None,
    pin_uv_param: bytes | None,
) -> pin.Token:
    message = bytes([sub]) + (cbor.encode(sub_params) if sub_params is not None else b"")
    return check_pin_uv_auth(device, protocol, pin_uv_param, message, Permission.CREDENTIAL_MGMT)


def _bound_to(token: pin.Token, rp_id: str) -> None:
    if token.rp_id is not None and token.rp_id != rp_id:
        raise CtapFailure(Status.PIN_AUTH_INVALID)


def handle(
    device: Device, state: AuthenticatorState, raw: dict[Any, Any], link: Link
) -> dict[int, Any] | None:
    sub = params.required(raw, 1, int)
    sub_params = params.optional(raw, 2, dict)
    if sub in (ENUMERATE_RPS_NEXT, ENUMERATE_CREDENTIALS_NEXT):
        enumeration = device.enumeration
        if enumeration is None or enumeration.kind != sub or not enumeration.items:
            raise CtapFailure(Status.NOT_ALLOWED)
        item = enumeration.items.pop(0)
        if not enumeration.items:
            device.enumeration = None
        return item
    if sub not in (
        GET_CREDS_METADATA,
        ENUMERATE_RPS_BEGIN,
        ENUMERATE_CREDENTIALS_BEGIN,
        DELETE_CREDENTIAL,
        UPDATE_USER_INFORMATION,
    ):
        raise CtapFailure(Status.INVALID_SUBCOMMAND)
    token = _authorize(device, sub, sub_params, params.optional(raw, 3, int), params.optional(raw, 4, bytes))
    device.enumeration = None
    if sub == GET_CREDS_METADATA:
        _bound_to(token, "")  # an RP-bound token may not see the whole key
        return {1: len(state.credentials), 2: MAX_RESIDENT - len(state.credentials)}
    if sub == ENUMERATE_RPS_BEGIN:
        _bound_to(token, "")
        return _enumerate_rps(device, state)
    sub_params = sub_params or {}
    if sub == ENUMERATE_CREDENTIALS_BEGIN:
        rp_hash = params.required(sub_params, 1, bytes)
        return _enumerate_credentials(device, state, token, rp_hash)
    record = _record(state, sub_params)
    _bound_to(token, record.rp_id)
    if sub == DELETE_CREDENTIAL:
        state.credentials.remove(record)
        return None
    user = params.required(sub_params, 3, dict)
    if params.required(user, "id", bytes) != record.user_id:
        raise CtapFailure(Status.INVALID_PARAMETER)
    record.user_name = params.optional(user, "name", str)
    record.user_display_name = params.optional(user, "displayName", str)
    return None


def _record(state: AuthenticatorState, sub_params: dict[Any, Any]) -> ResidentCredential:
    descriptor = params.required(sub_params, 2, dict)
    record = find_resident(state, params.required(descriptor, "id", bytes))
    if record is None:
        raise CtapFailure(Status.NO_CREDENTIALS)
    return record


def _enumerate_rps(device: Device, state: AuthenticatorState) -> dict[int, Any]:
    rps: dict[str, str | None] = {}
    for record in state.credentials:
        rps.setdefault(record.rp_id, record.rp_name)
    if not rps:
        raise CtapFailure(Status.NO_CREDENTIALS)
    items: list[dict[int, Any]] = []
    for rp_id, name in rps.items():
        rp: dict[str, Any] = {"id": rp_id}
        if name is not None:
            rp["name"] = name
        items.append({3: rp, 4: hashlib.sha256(rp_id.encode()).digest()})
    items[0][5] = len(items)
    device.enumeration = Enumeration(ENUMERATE_RPS_NEXT, items[1:]) if len(items) > 1 else None
    return items[0]


def _enumerate_credentials(
    device: Device, state: AuthenticatorState, token: pin.Token, rp_hash: bytes
) -> dict[int, Any]:
    records = [c for c in state.credentials if hashlib.sha256(c.rp_id.encode()).digest() == rp_hash]
    if not records:
        raise CtapFailure(Status.NO_CREDENTIALS)
    _bound_to(token, records[0].rp_id)
    items: list[dict[int, Any]] = []
    for record in records:
        user: dict[str, Any] = {"id": record.user_id}
        if record.user_name is not None:
            user["name"] = record.user_name
        if record.user_display_name is not None:
            user["displayName"] = record.user_display_name
        key = device.private_key(record.alg, record.private)
        item = {
            6: user,
            7: {"id": record.credential_id, "type": "public-key"},
            8: credentials.cose_public_key(record.alg, key),
            10: record.cred_protect,
        }
        wrapped = device.unwrap(state, record.credential_id, rp_hash)
        if wrapped is not None and wrapped.large_blob_key:
            item[11] = credentials.large_blob_key(state.wrap_key, record.credential_id)
        if wrapped is not None:  # thirdPartyPayment (CTAP 2.2)
            item[12] = wrapped.third_party_payment
        items.append(item)
    items[0][9] = len(items)
    device.enumeration = Enumeration(ENUMERATE_CREDENTIALS_NEXT, items[1:]) if len(items) > 1 else None
    return items[0]
