"""authenticatorGetAssertion (0x02) and authenticatorGetNextAssertion (0x08)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keyctl.authenticator import credentials, model, params
from keyctl.authenticator.commands.common import (
    auth_data,
    find_resident,
    hmac_secret_output,
    hmac_secret_request,
    large_blob_key_requested,
    lookup,
    rp_id_hash,
)
from keyctl.authenticator.commands.user_verification import authorize, collect_presence
from keyctl.authenticator.credentials import WrappedKey
from keyctl.authenticator.device import AssertionContext, Device, PendingAssertions
from keyctl.authenticator.pin import Permission
from keyctl.authenticator.ports import Link
from keyctl.authenticator.state import AuthenticatorState, Kind, ResidentCredential
from keyctl.authenticator.status import CtapFailure, Status

NEXT_ASSERTION_WINDOW_S = 30.0


@dataclass(frozen=True)
class GetAssertionRequest:
    rp_id: str
    client_data_hash: bytes
    allow: tuple[bytes, ...]
    extensions: dict[str, Any]
    options: dict[str, bool]
    pin_uv_param: bytes | None
    pin_uv_protocol: int | None


def parse(raw: dict[Any, Any]) -> GetAssertionRequest:
    return GetAssertionRequest(
        rp_id=params.required(raw, 1, str),
        client_data_hash=params.required(raw, 2, bytes),
        allow=tuple(params.descriptors(raw, 3)),
        extensions=params.optional(raw, 4, dict) or {},
        options=params.options(raw, 5),
        pin_uv_param=params.optional(raw, 6, bytes),
        pin_uv_protocol=params.optional(raw, 7, int),
    )


def handle(device: Device, state: AuthenticatorState, raw: dict[Any, Any], link: Link) -> dict[int, Any]:
    request = parse(raw)
    if "rk" in request.options:
        raise CtapFailure(Status.UNSUPPORTED_OPTION)
    up = request.options.get("up", True)
    uv = authorize(
        device,
        state,
        link,
        rp_id=request.rp_id,
        client_data_hash=request.client_data_hash,
        pin_uv_param=request.pin_uv_param,
        pin_uv_protocol=request.pin_uv_protocol,
        uv_option=request.options.get("uv", False),
        permission=Permission.GET_ASSERTION,
        needs_uv=False,
    )
    found: list[tuple[bytes, WrappedKey, ResidentCredential | None]] = []
    if request.allow:
        for credential_id in request.allow:
            match = lookup(device, state, credential_id, request.rp_id)
            if match is not None:
                found.append((credential_id, *match))
    else:
        residents = sorted(
            (c for c in state.credentials if c.rp_id == request.rp_id), key=lambda c: -c.serial
        )
        for record in residents:
            match = lookup(device, state, record.credential_id, request.rp_id)
            if match is not None:
                found.append((record.credential_id, *match))
    usable = [
        item
        for item in found
        if item[1].cred_protect < 3 or uv
        if item[1].cred_protect != 2 or uv or request.allow
    ]
    if not usable:
        raise CtapFailure(Status.NO_CREDENTIALS)
    hmac_request = None  # checked before the touch, so a malformed request does not consume one
    extensions = model.extensions(state.model, request.extensions)  # a model ignores what it lacks
    if up and "hmac-secret" in extensions:
        hmac_request = hmac_secret_request(device, extensions["hmac-secret"])
    if up:
        collect_presence(
            device, state, "sign in", request.rp_id, link, used_token=request.pin_uv_param is not None
        )
    context = AssertionContext(
        rp_hash=rp_id_hash(request.rp_id),
        client_data_hash=request.client_data_hash,
        up=up,
        uv=uv,
        hmac_secret=hmac_request,
        get_cred_blob=extensions.get("credBlob") is True,
        large_blob_key=large_blob_key_requested(extensions),
        third_party_payment=extensions.get("thirdPartyPayment") is True,
    )
    first = usable[0]
    response = _assertion(device, state, context, first[0], first[1], first[2])
    if not request.allow:
        response[5] = len(usable)
        if len(usable) > 1:
            device.pending_assertions = PendingAssertions(
                context,
                [item[0] for item in usable[1:]],
                device.clock.monotonic() + NEXT_ASSERTION_WINDOW_S,
            )
    return response


def handle_next(device: Device, state: AuthenticatorState, raw: dict[Any, Any], link: Link) -> dict[int, Any]:
    pending = device.pending_assertions
    if not isinstance(pending, PendingAssertions) or device.clock.monotonic() > pending.expires:
        device.pending_assertions = None
        raise CtapFailure(Status.NOT_ALLOWED)
    credential_id = pending.remaining.pop(0)
    if not pending.remaining:
        device.pending_assertions = None
    record = find_resident(state, credential_id)
    if record is None:  # deleted in between
        raise CtapFailure(Status.NO_CREDENTIALS)
    wrapped = device.unwrap(state, credential_id, pending.context.rp_hash)
    if wrapped is None:
        raise CtapFailure(Status.NO_CREDENTIALS)
    return _assertion(device, state, pending.context, credential_id, wrapped, record)


def _assertion(
    device: Device,
    state: AuthenticatorState,
    context: AssertionContext,
    credential_id: bytes,
    wrapped: WrappedKey,
    record: ResidentCredential | None,
) -> dict[int, Any]:
    extensions: dict[str, Any] = {}
    if context.hmac_secret is not None and wrapped.hmac_secret:
        extensions["hmac-secret"] = hmac_secret_output(
            device, state, context.hmac_secret, wrapped, context.uv
        )
    if context.get_cred_blob:
        extensions["credBlob"] = record.cred_blob if record is not None else wrapped.cred_blob
    if context.third_party_payment:
        extensions["thirdPartyPayment"] = wrapped.third_party_payment
    data = auth_data(
        context.rp_hash,
        up=context.up,
        uv=context.uv,
        counter=device.next_counter(state, credential_id, record),
        extensions=extensions,
        synced=state.kind is Kind.SYNCED,
    )
    key = device.private_key(wrapped.alg, wrapped.private)
    response: dict[int, Any] = {
        1: {"id": credential_id, "type": "public-key"},
        2: data,
        3: credentials.sign(key, data + context.client_data_hash),
    }
    if record is not None:
        user: dict[str, Any] = {"id": record.user_id}
        if context.uv:
            if record.user_name is not None:
                user["name"] = record.user_name
            if record.user_display_name is not None:
                user["displayName"] = record.user_display_name
        response[4] = user
    if context.large_blob_key and wrapped.large_blob_key:
        response[7] = credentials.large_blob_key(state.wrap_key, credential_id)
    return response
