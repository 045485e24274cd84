"""CTAP and fido2 client failures in the words users know from their sign-in page."""

from __future__ import annotations

from collections.abc import Sequence

from fido2.client import ClientError, PinRequiredError
from fido2.ctap import CtapError

from keyctl.device import errors as device_errors
from keyctl.errors import (
    CredentialExcluded,
    KeyctlError,
    NoCredential,
    NotSupported,
    NotVerified,
    PasskeyCanceled,
    PasskeyTimeout,
    PinAuthBlocked,
    PinBlocked,
    PinNotSet,
)

ERR = CtapError.ERR


def canceled(registering: bool) -> PasskeyCanceled:
    if registering:
        return PasskeyCanceled("Passkey setup canceled", "run the command again to retry")
    return PasskeyCanceled("Request canceled", "run the command again to retry")


def timed_out(timeout_s: float) -> PasskeyTimeout:
    return PasskeyTimeout(
        f"Passkey request timed out (no touch within {timeout_s:g} s)",
        "touch the key when it blinks, or give more time with --timeout SECONDS",
    )


def algorithm_names(algorithms: Sequence[int]) -> str:
    """COSE algorithm ids by name (RS256, ES256...), as servers and key datasheets name them."""
    from fido2.cose import CoseKey, UnsupportedKey

    names = []
    for alg in algorithms:
        cls = CoseKey.for_alg(alg)
        names.append(str(alg) if cls is UnsupportedKey else cls.__name__)
    return ", ".join(names)


def from_ctap(
    code: int, registering: bool, timeout_s: float, pin_retries: int | None, algorithms: Sequence[int] = ()
) -> KeyctlError:
    """The catalogue error for a CTAP status: the sign-in page's wording for the ceremony's own outcomes,
    keyctl.device.errors' catalogue for everything else (``algorithms``: what the server accepts)."""
    if code == ERR.UNSUPPORTED_ALGORITHM and algorithms:
        return NotSupported(
            "Passkeys not supported: the authenticator makes none of the key types the server accepts"
            f" ({algorithm_names(algorithms)})",
            "use a key that makes one of them, or ask the site to also accept ES256 or EdDSA",
        )
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
    if code == ERR.PIN_POLICY_VIOLATION:  # a ceremony sets no PIN: only a token request refused it
        forced = device_errors.forced_pin_change()
        return NotVerified(f"We could not verify you: {forced.message}", forced.remedy)
    mapped = device_errors.from_ctap(CtapError(code), pin_retries)
    if isinstance(mapped, (PinBlocked, PinAuthBlocked, PinNotSet)):
        # A sign-in page says "We could not verify you" for every PIN problem: one exit code here.
        return NotVerified(f"We could not verify you: {mapped.message}", mapped.remedy)
    return mapped


def from_client_error(
    error: ClientError,
    registering: bool,
    timeout_s: float,
    pin_retries: int | None,
    algorithms: Sequence[int] = (),
) -> KeyctlError:
    """The catalogue error for a failure raised by fido2's Fido2Client."""
    if isinstance(error, PinRequiredError):
        return NotVerified(
            "We could not verify you: this key needs its PIN",
            "give the PIN at the prompt, through --pin-env VAR, or on stdin",
        )
    if isinstance(error.cause, CtapError):
        return from_ctap(error.cause.code, registering, timeout_s, pin_retries, algorithms)
    if error.code == ClientError.ERR.TIMEOUT:
        return timed_out(timeout_s)
    if error.code == ClientError.ERR.DEVICE_INELIGIBLE:
        if registering:
            return from_ctap(ERR.CREDENTIAL_EXCLUDED, registering, timeout_s, pin_retries)
        return from_ctap(ERR.NO_CREDENTIALS, registering, timeout_s, pin_retries)
    cause = f": {error.cause}" if isinstance(error.cause, str) else ""
    return NotSupported(f"Passkeys not supported{cause}", "use another authenticator")
