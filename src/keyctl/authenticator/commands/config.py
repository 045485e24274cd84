"""authenticatorConfig (0x0D): enterprise attestation, alwaysUv, minimum PIN length."""

from __future__ import annotations

from typing import Any

from keyctl.authenticator import cbor, model, params
from keyctl.authenticator.commands.common import check_pin_uv_auth
from keyctl.authenticator.device import Device
from keyctl.authenticator.pin import Permission
from keyctl.authenticator.ports import Link
from keyctl.authenticator.state import AuthenticatorState
from keyctl.authenticator.status import CtapFailure, Status

ENABLE_ENTERPRISE_ATTESTATION = 0x01
TOGGLE_ALWAYS_UV = 0x02
SET_MIN_PIN_LENGTH = 0x03
MAX_RP_IDS = 8
# the getInfo option that says a subcommand is there (a model of a real key may lack it)
SUBCOMMAND_OPTION = {
    ENABLE_ENTERPRISE_ATTESTATION: "ep",
    TOGGLE_ALWAYS_UV: "alwaysUv",
    SET_MIN_PIN_LENGTH: "setMinPINLength",
}


def handle(device: Device, state: AuthenticatorState, raw: dict[Any, Any], link: Link) -> None:
    sub = params.required(raw, 1, int)
    sub_params = params.optional(raw, 2, dict)
    protocol = params.optional(raw, 3, int)
    pin_uv_param = params.optional(raw, 4, bytes)
    if sub not in SUBCOMMAND_OPTION or not model.has(state.model, SUBCOMMAND_OPTION[sub]):
        raise CtapFailure(Status.INVALID_SUBCOMMAND)
    if pin_uv_param is not None or device.protected(state) or state.always_uv:
        message = b"\xff" * 32 + b"\x0d" + bytes([sub])
        if sub_params is not None:
            message += cbor.encode(sub_params)
        check_pin_uv_auth(device, protocol, pin_uv_param, message, Permission.AUTHENTICATOR_CFG)
    if sub == ENABLE_ENTERPRISE_ATTESTATION:
        state.enterprise_attestation = True
    elif sub == TOGGLE_ALWAYS_UV:
        state.always_uv = not state.always_uv
    else:
        _set_min_pin_length(state, sub_params or {})


def _set_min_pin_length(state: AuthenticatorState, sub_params: dict[Any, Any]) -> None:
    new_length = params.optional(sub_params, 1, int)
    rp_ids = params.optional(sub_params, 2, list)
    force = params.optional(sub_params, 3, bool) or False
    if rp_ids is not None and (len(rp_ids) > MAX_RP_IDS or not all(isinstance(r, str) for r in rp_ids)):
        raise CtapFailure(Status.INVALID_PARAMETER if len(rp_ids) <= MAX_RP_IDS else Status.LIMIT_EXCEEDED)
    if new_length is not None and new_length < state.min_pin_length:
        raise CtapFailure(Status.PIN_POLICY_VIOLATION)
    if force and state.pin_hash is None:
        raise CtapFailure(Status.PIN_NOT_SET)
    if new_length is not None:
        state.min_pin_length = new_length
    if rp_ids is not None:
        state.min_pin_length_rp_ids = list(rp_ids)
    if state.pin_hash is not None and (force or state.pin_code_points < state.min_pin_length):
        state.force_pin_change = True
