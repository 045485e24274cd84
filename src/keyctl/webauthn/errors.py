"""CTAP and fido2 client failures in the words users know from their sign-in page."""

from __future__ import annotations

from fido2.client import ClientError, PinRequiredError
from fido2.ctap import CtapError

from keyctl.errors import (
    CredentialExcluded,
    KeyctlError,
    NoCredential,
    NotSupported,
    NotVerified,
    PasskeyCanceled,
    PasskeyTimeout,
)

ERR = CtapError.ERR
_RESET = "reset the key and set a new PIN (a reset erases the passkeys on it)"


def canceled(registering: bool) -> PasskeyCanceled:
    if registering:
        return PasskeyCanceled("Passkey setup canceled", "run the command again to retry")
    return PasskeyCanceled("Request canceled", "run the command again to retry")


def timed_out(timeout_s: float) -> PasskeyTimeout:
    return PasskeyTimeout(
        f"Passkey request timed out (no touch within {timeout_s:g} s)",
        "touch the key when it blinks, or give more time with --timeout SECONDS",
    )


def from_ctap(code: int, registering: bool, timeout_s: float, pin_retries: int | None) -> KeyctlError:
    """The catalogue error for a CTAP status from the authenticator."""
    if code == ERR.NO_CREDENTIALS:
        return NoCredential(
            "Passkey not found on this device",
            "it may be registered on another device: sign in with password and 2FA, then 'keyctl register'",
        )
    if code == ERR.CREDENTIAL_EXCLUDED:
        return CredentialExcluded(
            "Passkey already registered for this device",
            "this authenticator is already registered for the account: sign in with it instead",
        )
    if code in (ERR.USER_ACTION_TIMEOUT, ERR.ACTION_TIMEOUT, ERR.KEEPALIVE_CANCEL):
        # KEEPALIVE_CANCEL here means keyctl's own timer cancelled the wait (Ctrl-C is handled earlier).
        return timed_out(timeout_s)
    if code == ERR.OPERATION_DENIED:
        return canceled(registering)
    if code == ERR.PIN_INVALID:
        left = f": wrong PIN, {pin_retries} attempts left" if pin_retries is not None else ": wrong PIN"
        return NotVerified(f"We could not verify you{left}", "enter the key's PIN again")
    if code == ERR.PIN_BLOCKED:
        return NotVerified("We could not verify you: the PIN is blocked", _RESET)
    if code == ERR.PIN_AUTH_BLOCKED:
        return NotVerified(
            "We could not verify you: too many wrong PINs in a row",
            "remove and reinsert the key, then try again with the right PIN",
        )
    if code in (ERR.UV_BLOCKED, ERR.UV_INVALID):
        return NotVerified("We could not verify you: user verification failed", "use the key's PIN instead")
    if code in (ERR.PIN_NOT_SET, ERR.PUAT_REQUIRED):
        return NotVerified(
            "We could not verify you: the server requires a PIN and this key has none",
            "set a PIN on the key first",
        )
    if code in (ERR.UNSUPPORTED_ALGORITHM, ERR.UNSUPPORTED_OPTION, ERR.KEY_STORE_FULL):
        return NotSupported(
            f"Passkeys not supported: the authenticator refused the request ({ERR(code).name})",
            "use another authenticator",
        )
    name = ERR(code).name if code in ERR._value2member_map_ else f"0x{code:02x}"
    return NotSupported(f"Passkeys not supported: the authenticator answered {name}", "try another key")


def from_client_error(
    error: ClientError, registering: bool, timeout_s: float, pin_retries: int | None
) -> KeyctlError:
    """The catalogue error for a failure raised by fido2's Fido2Client."""
    if isinstance(error, PinRequiredError):
        return NotVerified(
            "We could not verify you: this key needs its PIN",
            "give the PIN at the prompt, through --pin-env VAR, or on stdin",
        )
    if isinstance(error.cause, CtapError):
        return from_ctap(error.cause.code, registering, timeout_s, pin_retries)
    if error.code == ClientError.ERR.TIMEOUT:
        return timed_out(timeout_s)
    if error.code == ClientError.ERR.DEVICE_INELIGIBLE:
        if registering:
            return from_ctap(ERR.CREDENTIAL_EXCLUDED, registering, timeout_s, pin_retries)
        return from_ctap(ERR.NO_CREDENTIALS, registering, timeout_s, pin_retries)
    cause = f": {error.cause}" if isinstance(error.cause, str) else ""
    return NotSupported(f"Passkeys not supported{cause}", "use another authenticator")
