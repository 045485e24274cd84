"""The pinUvAuthParam / uv option steps shared by makeCredential and getAssertion (CTAP 2.1 §6.1.2)."""

from __future__ import annotations

from keyctl.authenticator import pin
from keyctl.authenticator.commands.common import check_pin_uv_auth
from keyctl.authenticator.device import Device
from keyctl.authenticator.ports import Link
from keyctl.authenticator.state import AuthenticatorState
from keyctl.authenticator.status import CtapFailure, Status


def authorize(
    device: Device,
    state: AuthenticatorState,
    link: Link,
    *,
    rp_id: str,
    client_data_hash: bytes,
    pin_uv_param: bytes | None,
    pin_uv_protocol: int | None,
    uv_option: bool,
    permission: pin.Permission,
    needs_uv: bool,
) -> bool:
    """Check the request's PIN/UV evidence; True when the user was verified.

    ``needs_uv`` says the operation may not proceed without verification when the key is protected
    (makeCredential of a discoverable credential, or with makeCredUvNotRqd off).
    """
    if pin_uv_param is not None and len(pin_uv_param) == 0:
        # A platform's "touch to select this key" probe.
        device.confirm_presence(state, "select this key", rp_id, link)
        raise CtapFailure(Status.PIN_INVALID if state.pin_hash is not None else Status.PIN_NOT_SET)
    if pin_uv_param is not None:
        check_pin_uv_auth(device, pin_uv_protocol, pin_uv_param, client_data_hash, permission, rp_id)
        return True
    if uv_option:
        if not device.uv_configured(state):  # §6.1.2 step 5: absent, or not yet enabled (no finger)
            raise CtapFailure(Status.INVALID_OPTION)
        device.verify_user(state)
        return True
    if state.always_uv or (needs_uv and device.protected(state)):
        if state.always_uv and device.uv_configured(state):
            device.verify_user(state)
            return True
        raise CtapFailure(Status.PUAT_REQUIRED if device.protected(state) else Status.PIN_NOT_SET)
    return False


def collect_presence(
    device: Device, state: AuthenticatorState, action: str, rp_id: str, link: Link, *, used_token: bool
) -> None:
    """User presence for makeCredential/getAssertion (CTAP 2.1 §6.1.2 step 14, §6.2.2 step 9).

    A token issued through built-in UV already carries the user's touch (its userPresent flag): the
    first command made with it asks for none, and any use clears the flag, so each touch serves once.
    """
    token = device.token if used_token else None
    if token is not None and token.user_present:
        token.user_present = False
        return
    device.confirm_presence(state, action, rp_id, link)
