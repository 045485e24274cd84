"""Windows: webauthn.dll through fido2's WindowsClient (Windows Hello and OS-routed USB keys)."""

from __future__ import annotations

import ctypes
from threading import Event
from typing import TYPE_CHECKING, Any

from fido2.client import AssertionSelection, ClientDataCollector, ClientError, WebAuthnClient
from fido2.ctap import CtapError
from fido2.webauthn import (
    PublicKeyCredentialCreationOptions,
    PublicKeyCredentialRequestOptions,
    RegistrationResponse,
)

from keyctl.errors import KeyctlError, NoDevice, NotSupported
from keyctl.webauthn import errors

if TYPE_CHECKING:
    from keyctl.platform import PlatformStatus

# webauthn.dll's failures (HRESULTs, as webauthn.h lists them for WebAuthNGetErrorName).
NTE_EXISTS = 0x8009000F  # InvalidStateError: an excluded credential is on the authenticator
NTE_NOT_FOUND = 0x80090011  # NotAllowedError
NTE_TOKEN_KEYSET_STORAGE_FULL = 0x80090023  # ConstraintError
NTE_INVALID_PARAMETER = 0x80090027  # NotSupportedError
NTE_NOT_SUPPORTED = 0x80090029  # ConstraintError
NTE_DEVICE_NOT_FOUND = 0x80090035  # NotAllowedError
NTE_USER_CANCELLED = 0x80090036  # NotAllowedError
HRESULT_ERROR_NOT_SUPPORTED = 0x80070032  # HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED): ConstraintError
HRESULT_ERROR_CANCELLED = 0x800704C7  # HRESULT_FROM_WIN32(ERROR_CANCELLED): NotAllowedError
HRESULT_ERROR_TIMEOUT = 0x800705B4  # HRESULT_FROM_WIN32(ERROR_TIMEOUT): NotAllowedError

# The CTAP status each HRESULT stands for, so the ceremonies' catalogue words them as for a USB key.
_AS_CTAP = {
    NTE_EXISTS: CtapError.ERR.CREDENTIAL_EXCLUDED,
    NTE_NOT_FOUND: CtapError.ERR.NO_CREDENTIALS,
    NTE_TOKEN_KEYSET_STORAGE_FULL: CtapError.ERR.KEY_STORE_FULL,
    NTE_USER_CANCELLED: CtapError.ERR.OPERATION_DENIED,
    HRESULT_ERROR_CANCELLED: CtapError.ERR.OPERATION_DENIED,
    HRESULT_ERROR_TIMEOUT: CtapError.ERR.USER_ACTION_TIMEOUT,
}


def from_hresult(hresult: int, registering: bool, timeout_s: float) -> KeyctlError:
    """The catalogue error for a failed webauthn.dll call."""
    hresult &= 0xFFFFFFFF  # ctypes reports an HRESULT as a negative int
    if hresult in _AS_CTAP:
        return errors.from_ctap(_AS_CTAP[hresult], registering, timeout_s, None)
    if hresult == NTE_DEVICE_NOT_FOUND:
        return NoDevice(
            "No compatible device found (Windows found no authenticator)",
            "set up Windows Hello, or insert a security key",
        )
    return NotSupported(
        f"Passkeys not supported (webauthn.dll failed with HRESULT 0x{hresult:08X})",
        "use a security key (--authenticator usb), or a phone",
    )


def _catalogue(error: ClientError, registering: bool, timeout_ms: int | None) -> KeyctlError:
    timeout_s = (timeout_ms or 0) / 1000
    hresult = getattr(error.cause, "winerror", None)  # fido2 wraps ctypes' OSError for a failed HRESULT
    if isinstance(hresult, int):
        return from_hresult(hresult, registering, timeout_s)
    return errors.from_client_error(error, registering, timeout_s, None)


class HelloClient(WebAuthnClient):
    """fido2's WindowsClient, with webauthn.dll's failures raised as keyctl's catalogue errors."""

    def __init__(self, windows: WebAuthnClient) -> None:
        self._windows = windows

    def make_credential(
        self, options: PublicKeyCredentialCreationOptions, event: Event | None = None
    ) -> RegistrationResponse:
        try:
            return self._windows.make_credential(options, event)
        except ClientError as error:
            raise _catalogue(error, True, options.timeout) from None

    def get_assertion(
        self, options: PublicKeyCredentialRequestOptions, event: Event | None = None
    ) -> AssertionSelection:
        try:
            return self._windows.get_assertion(options, event)
        except ClientError as error:
            raise _catalogue(error, False, options.timeout) from None


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

    return HelloClient(WindowsClient(collector))
