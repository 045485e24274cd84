"""authenticatorSelection (0x0B): the user touches the key they mean."""

from __future__ import annotations

from typing import Any

from keyctl.authenticator.device import Device
from keyctl.authenticator.ports import Link
from keyctl.authenticator.state import AuthenticatorState


def handle(device: Device, state: AuthenticatorState, raw: dict[Any, Any], link: Link) -> None:
    device.confirm_presence(state, "select this key", None, link)
