"""Platform authenticators (the one built into the computer) behind one interface: a fido2 WebAuthnClient.

- Windows: fido2's WindowsClient over webauthn.dll (Windows Hello, and USB keys routed through the OS,
  which is the only way without administrator rights on Windows 10 1903 and later).
- macOS and Linux: no bridge a plain command-line program can use; a precise NotSupported says why.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from keyctl.errors import NotSupported

if TYPE_CHECKING:
    from fido2.client import ClientDataCollector, WebAuthnClient

    from keyctl.platform.device import PlatformDevice

ALTERNATIVES = "use a security key (--authenticator usb), or keyctl's virtual authenticator (virtual:NAME)"


@dataclass(frozen=True)
class PlatformStatus:
    system: str
    available: bool
    detail: str
    routes_usb: bool  # USB security keys go through the OS API instead of raw HID


def _why_not() -> str:
    if sys.platform == "darwin":
        from keyctl.platform.macos import WHY_NOT

        return WHY_NOT
    return "Linux has no platform authenticator"


def _unsupported() -> NotSupported:
    return NotSupported(f"Passkeys not supported on this device: {_why_not()}", ALTERNATIVES)


def status() -> PlatformStatus:
    if sys.platform == "win32":
        from keyctl.platform import windows

        return windows.status()
    return PlatformStatus(sys.platform, False, _why_not(), False)


def authenticator() -> PlatformDevice:
    """``--authenticator platform`` for the ceremonies, or NotSupported saying why this computer has none."""
    found = status()
    if not found.available:
        raise NotSupported(f"Passkeys not supported on this device: {found.detail}", ALTERNATIVES)
    from keyctl.platform.device import PlatformDevice

    return PlatformDevice()


def platform_client(collector: ClientDataCollector) -> WebAuthnClient:
    """The OS authenticator as a WebAuthnClient, or NotSupported explaining why there is none."""
    if sys.platform == "win32":
        from keyctl.platform import windows

        return windows.client(collector)
    raise _unsupported()


def usb_route() -> PlatformDevice | None:
    """Where USB keys must go through the OS API (Windows without administrator rights), the device
    standing for that route; else None (keyctl opens the keys' raw HID)."""
    if sys.platform == "win32":
        from keyctl.platform import windows

        if windows.status().routes_usb:
            from keyctl.platform.device import PlatformDevice

            return PlatformDevice()
    return None
