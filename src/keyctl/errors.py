"""The user-facing error catalogue.

Every expected failure is a ``KeyctlError``: a one-line message naming what was wrong, a remedy saying how
to fix it, and a documented exit code. Lower layers raise these (or their own errors, which ``cli`` maps
onto these); ``cli`` prints them in one place. Messages never contain secrets.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; what each means is ``MEANINGS``."""

    OK = 0
    ERROR = 1
    USAGE = 2
    INVALID_INPUT = 3
    NOT_FOUND = 4
    ALREADY_EXISTS = 5
    SECRET_STORE = 6
    STATE = 7
    CANCELED = 8
    AUDIT_FINDINGS = 9
    # WebAuthn and security-key failures, in the words users know from their sign-in page.
    NO_CREDENTIAL = 10
    CREDENTIAL_EXCLUDED = 11
    PASSKEY_LIMIT = 12
    TIMEOUT = 13
    PASSKEY_CANCELED = 14
    NOT_VERIFIED = 15
    NOT_SUPPORTED = 16
    NO_DEVICE = 17
    SESSION_EXPIRED = 18
    VERIFICATION_FAILED = 19
    SERVER_UNAVAILABLE = 20
    SIGN_IN_FAILED = 21
    PHISHING = 22
    # Security-key management failures (keyctl key ...).
    PIN_BLOCKED = 23
    PIN_AUTH_BLOCKED = 24
    PIN_POLICY = 25
    PIN_NOT_SET = 26
    DEVICE_REMOVED = 27
    RESET_REFUSED = 28
    # Signals, as a shell reports them (128 + signal number).
    INTERRUPTED = 130
    PIPE_CLOSED = 141


# What each exit code means, for people: the docs' exit-code table is generated from it (tests/docs).
MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.ERROR: "unexpected failure (a bug): rerun with `--debug` for a traceback",
    ExitCode.USAGE: "the command line itself is wrong (unknown command or option)",
    ExitCode.INVALID_INPUT: "a value given to keyctl is malformed (URI, base32 secret, image, option value)",
    ExitCode.NOT_FOUND: "a named thing does not exist (TOTP entry, virtual authenticator, ...)",
    ExitCode.ALREADY_EXISTS: "the name is already taken (use `--force` where offered)",
    ExitCode.SECRET_STORE: "the OS keyring is missing, locked, or did not answer in time",
    ExitCode.STATE: "a stored file is corrupt or cannot be written",
    ExitCode.CANCELED: (
        "the user declined a confirmation, `--yes` was needed without a terminal, or Ctrl-D at a prompt"
    ),
    ExitCode.AUDIT_FINDINGS: "an audit found problems at or above the `--fail-on` severity",
    ExitCode.NO_CREDENTIAL: "No passkeys available / Passkey not found on this device",
    ExitCode.CREDENTIAL_EXCLUDED: "Passkey already registered for this device",
    ExitCode.PASSKEY_LIMIT: "Passkey limit reached",
    ExitCode.TIMEOUT: "Passkey request timed out",
    ExitCode.PASSKEY_CANCELED: "Passkey setup canceled / Request canceled",
    ExitCode.NOT_VERIFIED: "We could not verify you (wrong PIN, PIN blocked, UV failed)",
    ExitCode.NOT_SUPPORTED: "Passkeys not supported",
    ExitCode.NO_DEVICE: "No compatible device found",
    ExitCode.SESSION_EXPIRED: "Session expired",
    ExitCode.VERIFICATION_FAILED: "Verification failed",
    ExitCode.SERVER_UNAVAILABLE: "Passkey unavailable (server unreachable, 5xx, not JSON)",
    ExitCode.SIGN_IN_FAILED: "Sign-in failed (password or 2FA step refused)",
    ExitCode.PHISHING: "Origin / rpId mismatch refused before any authenticator was touched",
    ExitCode.PIN_BLOCKED: "PIN blocked: too many wrong PINs, only a reset helps",
    ExitCode.PIN_AUTH_BLOCKED: "PIN temporarily blocked: 3 wrong PINs in a row, remove and re-insert the key",
    ExitCode.PIN_POLICY: "PIN too short, too long, or refused by the key's policy",
    ExitCode.PIN_NOT_SET: "the key has no PIN and the operation needs one",
    ExitCode.DEVICE_REMOVED: "the key was removed during the operation",
    ExitCode.RESET_REFUSED: "reset refused: only allowed within seconds of plugging the key in",
    ExitCode.INTERRUPTED: "interrupted with Ctrl-C, at a prompt or anywhere else (nothing half-done is kept)",
    ExitCode.PIPE_CLOSED: (
        "the reader of stdout went away (`keyctl ... | head`): ends quietly, as after SIGPIPE"
    ),
}


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
