"""authenticatorReset (0x07): only within seconds of power-up and with a touch, like a real key."""

from __future__ import annotations

from typing import Any

from keyctl.authenticator.device import Device
from keyctl.authenticator.ports import Link
from keyctl.authenticator.state import (
    DEFAULT_MIN_PIN_LENGTH,
    EMPTY_LARGE_BLOB_ARRAY,
    PIN_RETRIES,
    UV_RETRIES,
    AuthenticatorState,
)
from keyctl.authenticator.status import CtapFailure, Status


def handle(device: Device, state: AuthenticatorState, raw: dict[Any, Any], link: Link) -> None:
    if not device.may_reset():
        raise CtapFailure(Status.NOT_ALLOWED)
    device.confirm_presence(state, "reset this key (deletes every passkey on it)", None, link)
    # Identity (AAGUID, attestation certificate) and the global counter survive, as on real keys;
    # a new wrapping key makes every non-discoverable credential ID unusable.
    state.wrap_key = device.rng.random(32)
    state.credentials = []
    state.credential_counters = {}
    state.pin_hash = None
    state.pin_code_points = 0
    state.pin_retries = PIN_RETRIES
    state.uv_retries = UV_RETRIES
    state.force_pin_change = False
    state.min_pin_length = DEFAULT_MIN_PIN_LENGTH
    state.min_pin_length_rp_ids = []
    state.always_uv = False
    state.enterprise_attestation = False
    state.templates = []
    state.large_blob_array = EMPTY_LARGE_BLOB_ARRAY
    device.clear_volatile()  # the consecutive-mismatch count (PIN_AUTH_BLOCKED) included
