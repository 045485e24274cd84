"""authenticatorSelection (0x0B): the user touches the key they mean."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keyctl.authenticator.ports import Link
from keyctl.authenticator.state import AuthenticatorState

if TYPE_CHECKING:
    from keyctl.authenticator.device import VirtualAuthenticator


def handle(device: VirtualAuthenticator, state: AuthenticatorState, raw: dict[Any, Any], link: Link) -> None:
    device.confirm_presence(state, "select this key", None, link)
