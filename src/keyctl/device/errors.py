"""CTAP status codes in the words users know, with a remedy each: the one mapping for key operations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fido2.ctap import CtapError

from keyctl import errors

ERR = CtapError.ERR

# status → (error class, message, remedy); PIN_INVALID is handled apart because it reports retries left.
_CATALOGUE: dict[int, tuple[type[errors.KeyctlError], str, str]] = {
    ERR.PIN_BLOCKED: (
        errors.PinBlocked,
        "the PIN is blocked after too many wrong attempts",
        "only a reset helps: 'keyctl key reset' (this deletes every credential on the key)",
    ),
    ERR.PIN_AUTH_BLOCKED: (
        errors.PinAuthBlocked,
        "3 wrong PINs in a row: the key refuses PINs until it is re-inserted",
        "remove the key, plug it in again, and retry with the right PIN",
    ),
    ERR.PIN_POLICY_VIOLATION: (
        errors.PinPolicy,
        "the key refused the new PIN (its PIN policy)",
        "choose a longer or less common PIN; 'keyctl key info' shows the minimum length",
    ),
    ERR.PIN_NOT_SET: (errors.PinNotSet, "the key has no PIN yet", "set one first: 'keyctl key pin set'"),
    ERR.PUAT_REQUIRED: (
        errors.PinNotSet,
        "this operation needs the key's PIN",
        "set one: 'keyctl key pin set'",
    ),
    ERR.UV_BLOCKED: (
        errors.NotVerified,
        "We could not verify you: built-in user verification is blocked",
        "use the PIN instead, or reset the key",
    ),
    ERR.UV_INVALID: (errors.NotVerified, "We could not verify you: user verification failed", "try again"),
    ERR.NOT_ALLOWED: (
        errors.ResetRefused,
        "the key refused: a reset is only allowed within a few seconds of plugging it in",
        "remove the key, plug it in again, and run the command right away",
    ),
    ERR.OPERATION_DENIED: (errors.PasskeyCanceled, "Request canceled on the key", "touch the key to confirm"),
    ERR.KEEPALIVE_CANCEL: (errors.PasskeyCanceled, "Request canceled", "run the command again"),
    ERR.USER_ACTION_TIMEOUT: (
        errors.PasskeyTimeout,
        "Passkey request timed out: the key was not touched in time",
        "touch the key when it blinks",
    ),
    ERR.ACTION_TIMEOUT: (errors.PasskeyTimeout, "Passkey request timed out", "touch the key when it blinks"),
    ERR.NO_CREDENTIALS: (
        errors.NoCredential,
        "Passkey not found on this device",
        "list what the key holds with 'keyctl key creds list'",
    ),
    ERR.CREDENTIAL_EXCLUDED: (errors.CredentialExcluded, "Passkey already registered for this device", ""),
    ERR.UNSUPPORTED_ALGORITHM: (
        errors.NotSupported,
        "Passkeys not supported: the key supports none of the requested algorithms",
        "use another key",
    ),
    ERR.INVALID_COMMAND: (
        errors.NotSupported,
        "this key does not support that command",
        "'keyctl key info' shows what the key supports",
    ),
    ERR.UNSUPPORTED_OPTION: (
        errors.NotSupported,
        "this key does not support that option",
        "'keyctl key info' shows what the key supports",
    ),
    ERR.FP_DATABASE_FULL: (
        errors.NotSupported,
        "the key has no room for another fingerprint",
        "delete one with 'keyctl key fingerprints delete'",
    ),
    ERR.KEY_STORE_FULL: (
        errors.NotSupported,
        "the key has no room for another discoverable credential",
        "delete one with 'keyctl key creds delete'",
    ),
}


def from_ctap(error: CtapError, pin_retries: int | None = None) -> errors.KeyctlError:
    """The KeyctlError for a CTAP status; ``pin_retries`` is what the key reports after PIN_INVALID."""
    if error.code in (ERR.PIN_INVALID, ERR.PIN_AUTH_INVALID):
        left = "" if pin_retries is None else f" ({pin_retries} attempts left before the PIN blocks)"
        return errors.NotVerified(f"We could not verify you: wrong PIN{left}", "check the PIN and try again")
    known = _CATALOGUE.get(error.code)
    if known is None:
        name = getattr(error.code, "name", f"0x{int(error.code):02X}")
        return errors.NotSupported(f"the key answered with error {name}", "try another key, or report it")
    error_class, message, remedy = known
    return error_class(message, remedy)


def forced_pin_change() -> errors.PinPolicy:
    """The key refuses its own PIN until it is changed (getInfo's forcePINChange): a token request then
    answers PIN_POLICY_VIOLATION, or PIN_INVALID through CTAP 2.0's getPinToken (CTAP 2.1 §6.5.5.7)."""
    return errors.PinPolicy(
        "the key requires a new PIN before it accepts this one (a forced PIN change)",
        "change it: 'keyctl key pin change'",
    )


@contextmanager
def key_errors() -> Iterator[None]:
    """Turn CTAP errors and a vanished device into KeyctlErrors (PIN retries are added by the caller)."""
    try:
        yield
    except CtapError as error:
        raise from_ctap(error) from error
    except OSError as error:
        raise errors.DeviceRemoved(
            f"lost the connection to the key ({error.strerror or error})",
            "plug the key in again and rerun the command; nothing was changed unless it said so",
        ) from error
