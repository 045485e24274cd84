"""The user-facing error catalogue.

Every expected failure is a ``KeyctlError``: a one-line message naming what was wrong, a remedy saying how
to fix it, and a documented exit code. Lower layers raise these (or their own errors, which ``cli`` maps
onto these); ``cli`` prints them in one place. Messages never contain secrets.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; the README's table is generated from the same values."""

    OK = 0
    ERROR = 1  # unexpected failure (a bug): rerun with --debug
    USAGE = 2  # the command line itself is wrong (Typer/Click's own code)
    INVALID_INPUT = 3  # a value given to keyctl is malformed (URI, base32, file, option value)
    NOT_FOUND = 4  # a named thing does not exist (TOTP entry, virtual authenticator, ...)
    ALREADY_EXISTS = 5  # the name is taken; --force where offered
    SECRET_STORE = 6  # the OS keyring is missing, locked, or did not answer
    STATE = 7  # a stored file is corrupt or cannot be written
    CANCELED = 8  # the user said no at a confirmation prompt, or pressed Ctrl-C
    AUDIT_FINDINGS = 9  # an audit found problems at or above the --fail-on severity
    # WebAuthn and security-key failures, in the words users know from their sign-in page.
    NO_CREDENTIAL = 10  # "No passkeys available" / "Passkey not found on this device"
    CREDENTIAL_EXCLUDED = 11  # "Passkey already registered for this device"
    PASSKEY_LIMIT = 12  # "Passkey limit reached"
    TIMEOUT = 13  # "Passkey request timed out"
    PASSKEY_CANCELED = 14  # "Passkey setup canceled" / "Request canceled"
    NOT_VERIFIED = 15  # "We could not verify you" (PIN wrong/blocked, UV failed)
    NOT_SUPPORTED = 16  # "Passkeys not supported" (no authenticator, algorithm, capability)
    NO_DEVICE = 17  # "No compatible device found"
    SESSION_EXPIRED = 18  # "Session expired"
    VERIFICATION_FAILED = 19  # "Verification failed"
    SERVER_UNAVAILABLE = 20  # "Passkey unavailable"
    SIGN_IN_FAILED = 21  # password / TOTP step refused by the server
    PHISHING = 22  # origin / rpId mismatch refused before any authenticator is touched
    # Security-key management failures (keyctl key ...).
    PIN_BLOCKED = 23  # too many wrong PINs: only a reset helps
    PIN_AUTH_BLOCKED = 24  # 3 wrong PINs in a row: remove and re-insert the key
    PIN_POLICY = 25  # PIN too short / too long / refused by the key's policy
    PIN_NOT_SET = 26  # the operation needs a PIN and the key has none
    DEVICE_REMOVED = 27  # the key disappeared mid-operation
    RESET_REFUSED = 28  # reset asked for outside the key's power-up window
    # Signals, as a shell reports them (128 + signal number).
    INTERRUPTED = 130  # Ctrl-C (SIGINT), at a prompt or anywhere else: nothing half-done is kept
    PIPE_CLOSED = 141  # the reader of stdout went away (SIGPIPE), e.g. `keyctl ... | head`


class KeyctlError(Exception):
    """An expected failure: shown as ``error: <message>`` plus a remedy line, no traceback."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, remedy: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy

    def __str__(self) -> str:
        return self.message


class InvalidInput(KeyctlError):
    exit_code = ExitCode.INVALID_INPUT


class NotFound(KeyctlError):
    exit_code = ExitCode.NOT_FOUND


class AlreadyExists(KeyctlError):
    exit_code = ExitCode.ALREADY_EXISTS


class SecretStoreError(KeyctlError):
    exit_code = ExitCode.SECRET_STORE


class StateError(KeyctlError):
    exit_code = ExitCode.STATE


class Canceled(KeyctlError):
    exit_code = ExitCode.CANCELED


class Interrupted(KeyctlError):
    """Ctrl-C where a command records it before stopping (keyctl enroll's log); elsewhere it is exit 130."""

    exit_code = ExitCode.INTERRUPTED


# WebAuthn / security-key failures: the default message is the one users know from their sign-in page;
# callers pass a more precise message and a remedy where they have one.
class PasskeyError(KeyctlError):
    default_message = "Passkey request failed"

    def __init__(self, message: str = "", remedy: str = "") -> None:
        super().__init__(message or self.default_message, remedy)


class NoCredential(PasskeyError):
    exit_code = ExitCode.NO_CREDENTIAL
    default_message = "No passkeys available"


class CredentialExcluded(PasskeyError):
    exit_code = ExitCode.CREDENTIAL_EXCLUDED
    default_message = "Passkey already registered for this device"


class PasskeyLimit(PasskeyError):
    exit_code = ExitCode.PASSKEY_LIMIT
    default_message = "Passkey limit reached"


class PasskeyTimeout(PasskeyError):
    exit_code = ExitCode.TIMEOUT
    default_message = "Passkey request timed out"


class PasskeyCanceled(PasskeyError):
    exit_code = ExitCode.PASSKEY_CANCELED
    default_message = "Passkey setup canceled"


class NotVerified(PasskeyError):
    exit_code = ExitCode.NOT_VERIFIED
    default_message = "We could not verify you"


class NotSupported(PasskeyError):
    exit_code = ExitCode.NOT_SUPPORTED
    default_message = "Passkeys not supported"


class NoDevice(PasskeyError):
    exit_code = ExitCode.NO_DEVICE
    default_message = "No compatible device found"


class SessionExpired(PasskeyError):
    exit_code = ExitCode.SESSION_EXPIRED
    default_message = "Session expired"


class VerificationFailed(PasskeyError):
    exit_code = ExitCode.VERIFICATION_FAILED
    default_message = "Verification failed"


class ServerUnavailable(PasskeyError):
    exit_code = ExitCode.SERVER_UNAVAILABLE
    default_message = "Passkey unavailable"


class SignInFailed(PasskeyError):
    exit_code = ExitCode.SIGN_IN_FAILED
    default_message = "Sign-in failed"


class StepUpRequired(SignInFailed):
    """The server wants a fresh verification (a TOTP code or a passkey) before a sensitive action."""

    default_message = "Confirm it's you: the server needs a fresh verification for this"


class PhishingRefused(PasskeyError):
    exit_code = ExitCode.PHISHING
    default_message = "This server may not ask for passkeys of that site"


class AuditFindings(KeyctlError):
    exit_code = ExitCode.AUDIT_FINDINGS


class PinBlocked(KeyctlError):
    exit_code = ExitCode.PIN_BLOCKED


class PinAuthBlocked(KeyctlError):
    exit_code = ExitCode.PIN_AUTH_BLOCKED


class PinPolicy(KeyctlError):
    exit_code = ExitCode.PIN_POLICY


class PinNotSet(KeyctlError):
    exit_code = ExitCode.PIN_NOT_SET


class DeviceRemoved(KeyctlError):
    exit_code = ExitCode.DEVICE_REMOVED


class ResetRefused(KeyctlError):
    exit_code = ExitCode.RESET_REFUSED
