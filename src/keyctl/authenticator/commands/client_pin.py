"""authenticatorClientPIN (0x06): retries, key agreement, set/change PIN, PIN/UV auth tokens."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from keyctl.authenticator import model, params, pin
from keyctl.authenticator.device import Device
from keyctl.authenticator.pin import Permission
from keyctl.authenticator.ports import Link
from keyctl.authenticator.state import PIN_RETRIES, AuthenticatorState
from keyctl.authenticator.status import CtapFailure, Status

GET_PIN_RETRIES = 0x01
GET_KEY_AGREEMENT = 0x02
SET_PIN = 0x03
CHANGE_PIN = 0x04
GET_PIN_TOKEN = 0x05
GET_TOKEN_USING_UV = 0x06
GET_UV_RETRIES = 0x07
GET_TOKEN_USING_PIN = 0x09
MAX_CONSECUTIVE_MISMATCHES = 3


@dataclass(frozen=True)
class ClientPinRequest:
    protocol: int | None
    subcommand: int
    key_agreement: dict[Any, Any] | None
    pin_uv_param: bytes | None
    new_pin_enc: bytes | None
    pin_hash_enc: bytes | None
    permissions: int | None
    rp_id: str | None


def parse(raw: dict[Any, Any]) -> ClientPinRequest:
    return ClientPinRequest(
        protocol=params.optional(raw, 1, int),
        subcommand=params.required(raw, 2, int),
        key_agreement=params.optional(raw, 3, dict),
        pin_uv_param=params.optional(raw, 4, bytes),
        new_pin_enc=params.optional(raw, 5, bytes),
        pin_hash_enc=params.optional(raw, 6, bytes),
        permissions=params.optional(raw, 9, int),
        rp_id=params.optional(raw, 10, str),
    )


def _need(value: Any) -> Any:
    if value is None:
        raise CtapFailure(Status.MISSING_PARAMETER)
    return value


def handle(
    device: Device, state: AuthenticatorState, raw: dict[Any, Any], link: Link
) -> dict[int, Any] | None:
    request = parse(raw)
    sub = request.subcommand
    if sub == GET_PIN_RETRIES:
        # CTAP 2.1 allows either answer without a PIN; real keys (and python-fido2's suite) say PIN_NOT_SET.
        if state.pin_hash is None:
            raise CtapFailure(Status.PIN_NOT_SET)
        # powerCycleState: true while PIN_AUTH_BLOCKED lasts (until the key is re-inserted).
        return {3: state.pin_retries, 4: device.consecutive_pin_mismatches >= MAX_CONSECUTIVE_MISMATCHES}
    if sub == GET_UV_RETRIES:
        if not device.has_builtin_uv(state):
            raise CtapFailure(Status.INVALID_SUBCOMMAND)
        return {5: state.uv_retries}
    if sub not in (
        GET_KEY_AGREEMENT,
        SET_PIN,
        CHANGE_PIN,
        GET_PIN_TOKEN,
        GET_TOKEN_USING_UV,
        GET_TOKEN_USING_PIN,
    ):
        raise CtapFailure(Status.INVALID_SUBCOMMAND)
    if sub in (GET_TOKEN_USING_UV, GET_TOKEN_USING_PIN) and not model.has(state.model, "pinUvAuthToken"):
        raise CtapFailure(Status.INVALID_SUBCOMMAND)  # a model of a CTAP 2.0 key: getPinToken only
    proto = pin.protocol(_need(request.protocol))
    if sub == GET_KEY_AGREEMENT:
        return {1: device.key_agreement.cose()}
    shared = device.key_agreement.shared_secret(proto, _need(request.key_agreement))
    if sub == SET_PIN:
        _set_pin(device, state, proto, shared, request)
        return None
    if sub == CHANGE_PIN:
        _change_pin(device, state, proto, shared, request)
        return None
    if sub == GET_TOKEN_USING_UV:
        return _token_using_uv(device, state, proto, shared, request, link)
    return _token_using_pin(device, state, proto, shared, request)


def _new_pin(state: AuthenticatorState, proto: pin.Protocol, shared: bytes, new_pin_enc: bytes) -> bytes:
    padded = proto.decrypt(shared, new_pin_enc)
    if len(padded) < 64:
        raise CtapFailure(Status.PIN_POLICY_VIOLATION)
    new_pin = padded.rstrip(b"\0")
    try:
        code_points = len(new_pin.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise CtapFailure(Status.PIN_POLICY_VIOLATION) from error
    if code_points < state.min_pin_length or len(new_pin) > 63:
        raise CtapFailure(Status.PIN_POLICY_VIOLATION)
    state.pin_code_points = code_points
    return hashlib.sha256(new_pin).digest()[:16]


def _set_pin(
    device: Device,
    state: AuthenticatorState,
    proto: pin.Protocol,
    shared: bytes,
    request: ClientPinRequest,
) -> None:
    new_pin_enc = _need(request.new_pin_enc)
    pin_uv_param = _need(request.pin_uv_param)
    if state.pin_hash is not None:  # §6.5.5.5 step 3: checked before the pinUvAuthParam
        raise CtapFailure(Status.PIN_AUTH_INVALID)
    if not proto.verify(shared, new_pin_enc, pin_uv_param):
        raise CtapFailure(Status.PIN_AUTH_INVALID)
    state.pin_hash = _new_pin(state, proto, shared, new_pin_enc)
    state.pin_retries = PIN_RETRIES
    state.force_pin_change = False


def _check_pin(
    device: Device,
    state: AuthenticatorState,
    proto: pin.Protocol,
    shared: bytes,
    pin_hash_enc: bytes,
) -> None:
    """Compare the platform's encrypted PIN hash, counting retries like a real key."""
    if state.pin_hash is None:
        raise CtapFailure(Status.PIN_NOT_SET)
    if state.pin_retries <= 0:
        raise CtapFailure(Status.PIN_BLOCKED)
    if device.consecutive_pin_mismatches >= MAX_CONSECUTIVE_MISMATCHES:
        raise CtapFailure(Status.PIN_AUTH_BLOCKED)
    state.pin_retries -= 1
    if not hmac.compare_digest(proto.decrypt(shared, pin_hash_enc), state.pin_hash):
        device.key_agreement = pin.KeyAgreement()
        device.consecutive_pin_mismatches += 1
        if state.pin_retries <= 0:
            raise CtapFailure(Status.PIN_BLOCKED)
        if device.consecutive_pin_mismatches >= MAX_CONSECUTIVE_MISMATCHES:
            raise CtapFailure(Status.PIN_AUTH_BLOCKED)
        raise CtapFailure(Status.PIN_INVALID)
    state.pin_retries = PIN_RETRIES
    device.consecutive_pin_mismatches = 0


def _change_pin(
    device: Device,
    state: AuthenticatorState,
    proto: pin.Protocol,
    shared: bytes,
    request: ClientPinRequest,
) -> None:
    new_pin_enc = _need(request.new_pin_enc)
    pin_hash_enc = _need(request.pin_hash_enc)
    if state.pin_hash is None:
        raise CtapFailure(Status.PIN_NOT_SET)
    if not proto.verify(shared, new_pin_enc + pin_hash_enc, _need(request.pin_uv_param)):
        raise CtapFailure(Status.PIN_AUTH_INVALID)
    _check_pin(device, state, proto, shared, pin_hash_enc)
    new_hash = _new_pin(state, proto, shared, new_pin_enc)
    if state.force_pin_change and hmac.compare_digest(new_hash, state.pin_hash):
        raise CtapFailure(Status.PIN_POLICY_VIOLATION)
    state.pin_hash = new_hash
    state.force_pin_change = False
    device.token = None


def _issue(
    device: Device,
    proto: pin.Protocol,
    shared: bytes,
    permissions: Permission,
    rp_id: str | None,
    *,
    user_present: bool = False,
) -> dict[int, Any]:
    device.token = pin.Token(
        value=device.rng.random(pin.TOKEN_SIZE),
        permissions=permissions,
        rp_id=rp_id,
        issued_at=device.clock.monotonic(),
        user_present=user_present,
    )
    return {2: proto.encrypt(shared, device.token.value, device.rng.random(16))}


MODEL_PERMISSIONS = (
    (Permission.CREDENTIAL_MGMT, "credMgmt"),
    (Permission.LARGE_BLOB_WRITE, "largeBlobs"),
    (Permission.AUTHENTICATOR_CFG, "authnrCfg"),
)


def _permissions(device: Device, state: AuthenticatorState, request: ClientPinRequest) -> Permission:
    raw = _need(request.permissions)
    if raw == 0:
        raise CtapFailure(Status.INVALID_PARAMETER)
    supported = pin.SUPPORTED_PERMISSIONS
    if not device.has_sensor(state):  # no fingerprint sensor, so nothing to bio-enroll
        supported &= ~Permission.BIO_ENROLL
    for permission, option in MODEL_PERMISSIONS:  # a model of a real key lacking the feature
        if not model.has(state.model, option):
            supported &= ~permission
    if raw & ~supported:
        raise CtapFailure(Status.UNAUTHORIZED_PERMISSION)
    return Permission(raw)


def _token_using_pin(
    device: Device,
    state: AuthenticatorState,
    proto: pin.Protocol,
    shared: bytes,
    request: ClientPinRequest,
) -> dict[int, Any]:
    if request.subcommand == GET_PIN_TOKEN:
        if request.permissions is not None or request.rp_id is not None:
            raise CtapFailure(Status.INVALID_PARAMETER)
        permissions = Permission.MAKE_CREDENTIAL | Permission.GET_ASSERTION
    else:
        permissions = _permissions(device, state, request)
    _check_pin(device, state, proto, shared, _need(request.pin_hash_enc))
    if state.force_pin_change:
        # §6.5.5.7.1 step 11: getPinToken answers PIN_INVALID; §6.5.5.7.2 step 11: 0x09 a policy violation.
        legacy = request.subcommand == GET_PIN_TOKEN
        raise CtapFailure(Status.PIN_INVALID if legacy else Status.PIN_POLICY_VIOLATION)
    return _issue(device, proto, shared, permissions, request.rp_id)


def _token_using_uv(
    device: Device,
    state: AuthenticatorState,
    proto: pin.Protocol,
    shared: bytes,
    request: ClientPinRequest,
    link: Link,
) -> dict[int, Any]:
    if not device.has_builtin_uv(state):
        raise CtapFailure(Status.INVALID_SUBCOMMAND)
    permissions = _permissions(device, state, request)
    if not device.uv_configured(state):  # §6.5.5.7.3 step 5: supported but not configured
        raise CtapFailure(Status.NOT_ALLOWED)
    device.confirm_presence(state, "verify it is you", request.rp_id, link)
    device.verify_user(state)
    # §6.5.5.7.3 step 13: the UV method collected the user's touch, so the token carries it.
    return _issue(device, proto, shared, permissions, request.rp_id, user_present=True)
