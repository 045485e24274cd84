"""Windows: webauthn.dll through fido2's WindowsClient (Windows Hello and OS-routed USB keys)."""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any

from keyctl.errors import NotSupported

if TYPE_CHECKING:
    from fido2.client import ClientDataCollector, WebAuthnClient

    from keyctl.platform import PlatformStatus


def _api_version() -> int:
    """webauthn.dll's API version, 0 when the DLL is missing (before Windows 10 1903)."""
    try:
        from fido2.client.windows import WindowsClient
    except (OSError, AttributeError):
        return 0
    from fido2.client import win_api

    return int(win_api.WEBAUTHN_API_VERSION) if WindowsClient.is_available() else 0


def _is_admin() -> bool:
    shell32: Any = ctypes.windll.shell32  # type: ignore[attr-defined]
    return bool(shell32.IsUserAnAdmin())


def status() -> PlatformStatus:
    from keyctl.platform import PlatformStatus

    version = _api_version()
    if not version:
        return PlatformStatus(
            "win32", False, "webauthn.dll is missing: Windows 10 1903 or later is needed", False
        )
    routes_usb = not _is_admin()
    detail = f"Windows Hello through webauthn.dll (API version {version})"
    if routes_usb:
        detail += "; USB keys go through Windows too (raw HID access needs administrator rights)"
    return PlatformStatus("win32", True, detail, routes_usb)


def client(collector: ClientDataCollector) -> WebAuthnClient:
    if not _api_version():
        raise NotSupported(
            "Passkeys not supported on this device: webauthn.dll is missing (Windows 10 1903 or later)",
            "update Windows; run as administrator to reach USB keys directly",
        )
    from fido2.client.windows import WindowsClient

    client: WebAuthnClient = WindowsClient(collector)
    return client
