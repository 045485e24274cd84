"""authenticatorBioEnrollment (0x09): fingerprint enrollment with the injected (simulated) sensor."""

from __future__ import annotations

from typing import Any

from keyctl.authenticator import cbor, params
from keyctl.authenticator.commands.common import check_pin_uv_auth
from keyctl.authenticator.device import Device, Enrollment
from keyctl.authenticator.pin import Permission
from keyctl.authenticator.ports import KeepaliveStatus, Link, SampleStatus
from keyctl.authenticator.state import MAX_TEMPLATES, AuthenticatorState, Template
from keyctl.authenticator.status import CtapFailure, Status

FINGERPRINT = 0x01  # the only modality
TOUCH_SENSOR = 0x01  # fingerprintKind: touch (2 would be swipe)
MAX_FRIENDLY_NAME = 32  # bytes of UTF-8
TEMPLATE_ID_SIZE = 2

ENROLL_BEGIN = 0x01
ENROLL_CAPTURE_NEXT_SAMPLE = 0x02
CANCEL_CURRENT_ENROLLMENT = 0x03
ENUMERATE_ENROLLMENTS = 0x04
SET_FRIENDLY_NAME = 0x05
REMOVE_ENROLLMENT = 0x06
GET_FINGERPRINT_SENSOR_INFO = 0x07
AUTHORIZED = (
    ENROLL_BEGIN,
    ENROLL_CAPTURE_NEXT_SAMPLE,
    ENUMERATE_ENROLLMENTS,
    SET_FRIENDLY_NAME,
    REMOVE_ENROLLMENT,
)


def handle(
    device: Device, state: AuthenticatorState, raw: dict[Any, Any], link: Link
) -> dict[int, Any] | None:
    if not device.has_sensor(state):  # no sensor: answer like a key without the command
        raise CtapFailure(Status.INVALID_COMMAND)
    if params.optional(raw, 6, bool):
        return {1: FINGERPRINT}
    if params.required(raw, 1, int) != FINGERPRINT:
        raise CtapFailure(Status.INVALID_PARAMETER)
    sub = params.required(raw, 2, int)
    sub_params = params.optional(raw, 3, dict)
    if sub == GET_FINGERPRINT_SENSOR_INFO:
        return {2: TOUCH_SENSOR, 3: device.sensor.samples_required, 8: MAX_FRIENDLY_NAME}
    if sub == CANCEL_CURRENT_ENROLLMENT:
        device.enrollment = None
        return None
    if sub not in AUTHORIZED:
        raise CtapFailure(Status.INVALID_SUBCOMMAND)
    _authorize(device, sub, sub_params, params.optional(raw, 4, int), params.optional(raw, 5, bytes))
    sub_params = sub_params or {}
    if sub == ENROLL_BEGIN:
        return _begin(device, state, link)
    if sub == ENROLL_CAPTURE_NEXT_SAMPLE:
        return _capture_next(device, state, params.required(sub_params, 1, bytes), link)
    if sub == ENUMERATE_ENROLLMENTS:
        if not state.templates:
            raise CtapFailure(Status.INVALID_OPTION)
        return {7: [{1: t.template_id, 2: t.name or ""} for t in state.templates]}
    template = _template(state, params.required(sub_params, 1, bytes))
    if sub == SET_FRIENDLY_NAME:
        name = params.required(sub_params, 2, str)
        if not name or len(name.encode()) > MAX_FRIENDLY_NAME:
            raise CtapFailure(Status.INVALID_PARAMETER)
        template.name = name
    else:
        state.templates.remove(template)
    return None


def _authorize(
    device: Device,
    sub: int,
    sub_params: dict[Any, Any] | None,
    protocol: int | None,
    pin_uv_param: bytes | None,
) -> None:
    message = bytes([FINGERPRINT, sub]) + (cbor.encode(sub_params) if sub_params is not None else b"")
    check_pin_uv_auth(device, protocol, pin_uv_param, message, Permission.BIO_ENROLL)


def _template(state: AuthenticatorState, template_id: bytes) -> Template:
    for template in state.templates:
        if template.template_id == template_id:
            return template
    raise CtapFailure(Status.INVALID_PARAMETER)


def _sample(device: Device, link: Link) -> SampleStatus:
    """Wait for a finger on the sensor."""
    if link.cancelled():
        raise CtapFailure(Status.KEEPALIVE_CANCEL)
    link.keepalive(KeepaliveStatus.UPNEEDED)
    status = device.sensor.capture()
    if status is None:
        raise CtapFailure(Status.USER_ACTION_TIMEOUT)
    return status


def _begin(device: Device, state: AuthenticatorState, link: Link) -> dict[int, Any]:
    if len(state.templates) >= MAX_TEMPLATES:
        raise CtapFailure(Status.FP_DATABASE_FULL)
    taken = {t.template_id for t in state.templates}
    template_id = device.rng.random(TEMPLATE_ID_SIZE)
    while template_id in taken:
        template_id = device.rng.random(TEMPLATE_ID_SIZE)
    device.enrollment = None
    status = _sample(device, link)
    enrollment = Enrollment(template_id, device.sensor.samples_required)
    return {4: template_id, **_progress(device, state, enrollment, status)}


def _capture_next(
    device: Device, state: AuthenticatorState, template_id: bytes, link: Link
) -> dict[int, Any]:
    enrollment = device.enrollment
    if enrollment is None or enrollment.template_id != template_id:
        raise CtapFailure(Status.INVALID_PARAMETER)
    return _progress(device, state, enrollment, _sample(device, link))


def _progress(
    device: Device, state: AuthenticatorState, enrollment: Enrollment, status: SampleStatus
) -> dict[int, Any]:
    """Count a sample; the last good one stores the template."""
    if status is SampleStatus.GOOD:
        enrollment.remaining -= 1
    if enrollment.remaining == 0:
        state.templates.append(Template(enrollment.template_id, None))
        device.enrollment = None
    else:
        device.enrollment = enrollment
    return {5: int(status), 6: enrollment.remaining}
