"""Password and 2FA sign-in against servers whose profile has a ``[signin]`` table (keyctl's reference
server): password, then a TOTP code or the recovery code, or, at the first sign-in, TOTP enrollment
(secret, one code, the recovery code confirmed)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from keyctl.errors import AlreadyExists, InvalidInput, SignInFailed
from keyctl.webauthn.profile import dig
from keyctl.webauthn.session import Session

logger = logging.getLogger(__name__)

CodeSource = Callable[[], str]


@dataclass(frozen=True)
class Password:
    email: str
    password: str
    totp: CodeSource | None = None  # a current TOTP code, for accounts that have enrolled
    recovery_code: str | None = None
    enroll: Callable[[str], CodeSource] | None = None  # first sign-in: takes the otpauth URI, keeps it
    new_password: Callable[[], str] | None = None  # asked when the server finds the password breached


@dataclass(frozen=True)
class SignedIn:
    user: str
    method: Literal["totp", "recovery"]
    enrolled: bool  # TOTP was enrolled during this sign-in
    recovery_code: str | None  # a recovery code the server just issued (shown once: the user keeps it)
    server: Any  # the server's signed-in answer


def _path(session: Session, step: str) -> str:
    path = session.profile.signin.get(step)
    if path is None:
        raise InvalidInput(
            f"server profile {session.profile.name} has no password sign-in ({step})",
            "sign in with a passkey instead, or use --cookie-jar with a session from a browser",
        )
    return path


def _post(session: Session, step: str, body: dict[str, Any]) -> Any:
    return session.call("POST", _path(session, step), body)


def _check_signed_in(answer: Any) -> None:
    if not (isinstance(answer, dict) and answer.get("verified") is True):
        raise SignInFailed("Sign-in failed (the server did not confirm the sign-in)", "try again")


def password_sign_in(session: Session, credentials: Password, say: Callable[[str], None]) -> SignedIn:
    """Sign in with password and 2FA; ``say`` reports each step (no secrets in what it is given)."""
    answer = _post(session, "password", {"email": credentials.email, "password": credentials.password})
    status = answer.get("status") if isinstance(answer, dict) else None
    say("password accepted")
    if status == "password_change_required":
        if credentials.new_password is None:
            raise SignInFailed(
                "Sign-in failed: the server requires a new password (this one is on a breached list)",
                "sign in at a terminal to be asked for a new one, or change it on the server's sign-in page",
            )
        answer = _post(session, "password_change", {"new_password": credentials.new_password()})
        status = answer.get("status") if isinstance(answer, dict) else None
        say("password changed (the old one is in a list of breached passwords)")
    if status == "totp_enrollment_required":
        if credentials.enroll is None:
            raise SignInFailed(
                "Sign-in failed: this account must set up TOTP 2FA first",
                "pass --save-totp NAME to enroll it and keep the secret in keyctl's TOTP vault",
            )
        enrollment = _post(session, "totp_enroll", {})
        uri = enrollment.get("otpauth_uri") if isinstance(enrollment, dict) else None
        if not isinstance(uri, str):
            raise SignInFailed("Sign-in failed: the server sent no otpauth URI to enroll", "try again")
        code = credentials.enroll(uri)
        say("TOTP enrollment: secret received")
        verified = _post(session, "totp_enroll_verify", {"code": code()})
        recovery = verified.get("recovery_code") if isinstance(verified, dict) else None
        if not isinstance(recovery, str):
            raise SignInFailed("Sign-in failed: the server issued no recovery code", "try again")
        say("TOTP code accepted, recovery code issued")
        signed_in = _post(session, "recovery_confirm", {"recovery_code": recovery})
        _check_signed_in(signed_in)
        return SignedIn(credentials.email, "totp", True, recovery, signed_in)
    if status != "totp_required":
        raise SignInFailed(f"Sign-in failed: unexpected answer {status!r} to the password step", "try again")
    if credentials.recovery_code is not None:
        signed_in = _post(session, "recovery", {"recovery_code": credentials.recovery_code})
        _check_signed_in(signed_in)
        new_code = signed_in.get("new_recovery_code")
        return SignedIn(
            credentials.email, "recovery", False, new_code if isinstance(new_code, str) else None, signed_in
        )
    if credentials.totp is None:
        raise SignInFailed(
            "Sign-in failed: this account needs a 2FA code",
            "pass --totp NAME (a keyctl TOTP vault entry) or --recovery-code-env VAR",
        )
    signed_in = _post(session, "totp", {"code": credentials.totp()})
    _check_signed_in(signed_in)
    return SignedIn(credentials.email, "totp", False, None, signed_in)


def step_up(session: Session, code: CodeSource) -> None:
    """Confirm the signed-in user with a TOTP code, for a sensitive action the server refused with
    ``step_up_required``."""
    _post(session, "step_up_totp", {"code": code()})


def session_account(session: Session) -> str | None:
    """The account a reused session belongs to, or None when the profile has no way to ask."""
    if not session.profile.account:
        return None
    name = dig(session.call("GET", session.profile.account), session.profile.account_user)
    return name if isinstance(name, str) else None


def require_account(session: Session, user: str, where: str) -> None:
    """Refuse to act for ``user`` in a session that belongs to another account."""
    account = session_account(session)
    if account is not None and account.casefold() != user.casefold():
        raise InvalidInput(
            f"the session in {where} is {account}'s, not {user}'s: nothing was registered",
            f"give --user {account}, or a cookie jar of {user}'s session, or sign in with --password-env",
        )


def sign_out(session: Session) -> None:
    _post(session, "signout", {})


def code_from_uri(uri: str) -> CodeSource:
    """A TOTP code source for an otpauth URI held in memory only (``keyctl demo``)."""
    from keyctl.totp import model, vault

    credential = model.parse_uri(uri)
    return lambda: vault.totp_code(credential, time.time()).code


def vault_code(name: str, wait: Callable[[float], None]) -> CodeSource:
    """Codes of keyctl's TOTP vault entry ``name`` (NotFound at once if there is none); a TOTP step
    already sent is not sent again: ``wait`` is called for the seconds until the next one."""
    from keyctl.totp import used, vault

    if vault.get(name).kind != "totp":
        return lambda: vault.current_code(name).code
    return lambda: used.fresh_code(name, vault.load(name), wait)


def env_code(var: str, wait: Callable[[float], None]) -> CodeSource:
    """Codes of a TOTP secret (base32, or an otpauth URI) in environment variable ``var``, for one
    command: nothing is stored but the last time step sent (under ``$VAR``)."""
    import os

    from keyctl.totp import model, used

    raw = os.environ.get(var, "").strip()
    if not raw:
        raise InvalidInput(
            f"environment variable {var} is {'empty' if var in os.environ else 'not set'}",
            f"export {var} with the account's base32 TOTP secret or otpauth:// URI",
        )
    label = f"${var}"
    try:
        if raw.lower().startswith("otpauth://"):
            credential = model.parse_uri(raw, name=label)
        else:
            credential = model.Credential(model.Entry(name=label), model.decode_base32(raw))
    except InvalidInput as error:
        raise InvalidInput(f"${var}: {error.message}", error.remedy) from None
    if credential.entry.kind != "totp":
        raise InvalidInput(f"${var} holds an HOTP URI", "give a TOTP secret: HOTP counters need the vault")
    return lambda: used.fresh_code(label, credential, wait)


def vault_enroll(name: str, wait: Callable[[float], None]) -> Callable[[str], CodeSource]:
    """First sign-in: store the enrolled otpauth URI in the vault as ``name``, then give its codes."""
    from keyctl.totp import model, vault

    model.check_name(name)
    if any(entry.name == name for entry in vault.entries()):
        raise AlreadyExists(f"TOTP entry {name!r} already exists", "choose another --save-totp NAME")

    def enroll(uri: str) -> CodeSource:
        vault.add(model.parse_uri(uri, name))
        return vault_code(name, wait)

    return enroll
