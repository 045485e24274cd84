"""Step-up for sensitive actions.

Users: adding, renaming or deleting a passkey and changing the password need a verification (a TOTP code
or a passkey assertion) less than STEP_UP_TTL old in this session. Signing in is one; ``POST
/api/step-up/totp`` or the step-up passkey ceremony renews it. Without one the action is refused with
``step_up_required`` and changes nothing.

Admins: the admin API's bearer token is shared, so it names nobody. The admin actions that remove an
account's protection (resetting its 2FA, deleting it, deleting one of its passkeys) also need a step-up of
a named admin: an account whose email is one of ``Settings.admin_emails``, confirmed with that account's
own TOTP code or passkey. The step-up answers a token (single purpose, valid STEP_UP_TTL, stored hashed)
that the sensitive requests carry in the ``Keyctl-Step-Up`` header; their audit events name the admin
(``by``). A wrong admin code counts as a failed attempt of that admin's account, as at sign-in."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fido2.utils import websafe_encode
from fido2.webauthn import AuthenticationResponse, UserVerificationRequirement

from keyctl.server import twofactor
from keyctl.server.challenges import Challenge
from keyctl.server.policy import protection, sessions
from keyctl.server.policy.core import (
    ACTIVE,
    CODE,
    STEP_UP_TTL,
    Context,
    PolicyError,
    normalize_email,
    parse_response,
    token_hash,
)
from keyctl.server.policy.passkeys import _descriptors, _spending, _take_challenge, verify_assertion
from keyctl.server.storage import Row, Tx

ADMIN_HEADER = "Keyctl-Step-Up"
ADMIN_STEP_UP_MESSAGE = (
    "Confirm it's you: this admin action needs a named admin's step-up (a TOTP code or a passkey of an "
    f"--admin-email account) at most {STEP_UP_TTL // 60} minutes old"
)
NO_ADMINS = (
    "Confirm it's you: this admin action needs a named admin's step-up, and this server has no admins: "
    "start it with --admin-email EMAIL (an account with TOTP or a passkey)"
)
# What a client needs to step up, in the refusal's body.
ADMIN_STEP_UP_NEEDS = {
    "header": ADMIN_HEADER,
    "methods": {"totp": "/api/admin/step-up/totp", "passkey": "/api/admin/step-up/passkey/options"},
    "max_age_seconds": STEP_UP_TTL,
}


@dataclass(frozen=True)
class AdminStepUp:
    """A named admin's step-up: the token the sensitive admin requests carry, whose it is, until when."""

    token: str
    email: str
    expires_at: float


def _verified(ctx: Context, db: Tx, session: Row, method: str, ip: str, now: float) -> float:
    db.execute("UPDATE sessions SET verified_at = ? WHERE token_hash = ?", (now, session["token_hash"]))
    ctx.audit(db, "step_up", session["email"], ip, method=method)
    return now + STEP_UP_TTL


def _check_code(ctx: Context, db: Tx, user: Row, code: str, ip: str, now: float, failed: str) -> None:
    """Accept a TOTP code of ``user`` once per step, as at sign-in; a wrong or replayed code is a failed
    attempt (audited as ``failed``) that counts toward the block."""
    email = user["email"]
    protection.check_not_blocked(ctx, db, email, ip)
    if user["totp_secret"] is None:
        raise PolicyError(
            "invalid_code", "this account has no authenticator app (2FA was reset): use a passkey"
        )
    step = twofactor.matching_step(user["totp_secret"], code, now) if CODE.fullmatch(code) else None
    if step is None or step <= user["totp_last_step"]:
        message = "Incorrect code" if step is None else "That code was already used: wait for the next one"
        raise protection.failure(ctx, email, ip, "invalid_code", message, failed)
    db.execute("UPDATE users SET totp_last_step = ? WHERE id = ?", (step, user["id"]))


def with_totp(ctx: Context, token: str | None, code: str, ip: str) -> float:
    """Step up with a TOTP code (each step once, as at sign-in; a wrong code counts as a failed attempt).
    When the verification expires."""

    def work(db: Tx, now: float) -> float:
        session = sessions.session(db, token, ACTIVE, now)
        _check_code(ctx, db, ctx.user_by_id(db, session["user_id"]), code, ip, now, "step_up_failed")
        return _verified(ctx, db, session, "totp", ip, now)

    return ctx.run(work)


def _options(
    ctx: Context, db: Tx, user_id: int, kind: str, session_hash: str | None, now: float
) -> dict[str, Any]:
    """Request options for an assertion with one of this account's passkeys (user verification required:
    the passkey stands for the code)."""
    rows = ctx.passkey_rows(db, user_id)
    if not rows:
        raise PolicyError("unknown_credential", "No passkeys available: step up with a code instead")
    value = os.urandom(32)
    verification = UserVerificationRequirement.REQUIRED
    options, _ = ctx.fido.authenticate_begin(
        credentials=_descriptors(rows), user_verification=verification, challenge=value
    )
    ctx.challenges.add(
        db,
        Challenge(
            value=value,
            kind=kind,
            created_at=now,
            user_verification=verification.value,
            user_id=user_id,
            username_first=True,  # only this account's passkeys
            session_hash=session_hash,
        ),
    )
    return dict(options.public_key)


def passkey_options(ctx: Context, token: str | None) -> dict[str, Any]:
    def work(db: Tx, now: float) -> dict[str, Any]:
        session = sessions.session(db, token, ACTIVE, now)
        return _options(ctx, db, session["user_id"], "step_up", session["token_hash"], now)

    return ctx.run(work)


def passkey_verify(ctx: Context, token: str | None, body: Mapping[str, Any], ip: str) -> float:
    authentication = parse_response(AuthenticationResponse, body)
    credential_id = websafe_encode(authentication.raw_id)
    value = authentication.response.client_data.challenge

    def work(db: Tx, now: float) -> float:
        session = sessions.session(db, token, ACTIVE, now)
        challenge = _take_challenge(ctx, db, value, "step_up", now)
        try:
            if challenge.session_hash != session["token_hash"]:
                raise PolicyError("session_expired", "Session expired: this step-up began in another session")
            verify_assertion(ctx, db, challenge, authentication, credential_id, ip, now)
        except PolicyError as error:
            raise _spending(ctx, value, error) from None
        return _verified(ctx, db, session, "passkey", ip, now)

    return ctx.run(work)


def _admin_account(ctx: Context, db: Tx, email: str) -> Row:
    email = normalize_email(email)
    if email not in ctx.settings.admin_emails:
        raise PolicyError(
            "invalid_request", f"{email} is not an admin of this server (keyctl server --admin-email EMAIL)"
        )
    row = ctx.user_by_email(db, email)
    if row is None:
        raise PolicyError(
            "invalid_request",
            f"the admin {email} has no account on this server: create it and sign in once (TOTP enrollment)",
        )
    return row


def _admin_verified(ctx: Context, db: Tx, admin: Row, method: str, ip: str, now: float) -> AdminStepUp:
    token = secrets.token_urlsafe(32)
    db.execute("DELETE FROM admin_step_ups WHERE created_at <= ?", (now - STEP_UP_TTL,))
    db.execute(
        "INSERT INTO admin_step_ups (token_hash, user_id, method, created_at) VALUES (?, ?, ?, ?)",
        (token_hash(token), admin["id"], method, now),
    )
    ctx.audit(db, "admin_step_up", admin["email"], ip, method=method)
    return AdminStepUp(token, admin["email"], now + STEP_UP_TTL)


def admin_with_totp(ctx: Context, email: str, code: str, ip: str) -> AdminStepUp:
    """A named admin steps up with a code of their own account (each step once; a wrong code counts as a
    failed attempt of that account, and a block stops it as it stops a sign-in)."""

    def work(db: Tx, now: float) -> AdminStepUp:
        admin = _admin_account(ctx, db, email)
        _check_code(ctx, db, admin, code, ip, now, "admin_step_up_failed")
        return _admin_verified(ctx, db, admin, "totp", ip, now)

    return ctx.run(work)


def admin_passkey_options(ctx: Context, email: str) -> dict[str, Any]:
    def work(db: Tx, now: float) -> dict[str, Any]:
        return _options(ctx, db, _admin_account(ctx, db, email)["id"], "admin_step_up", None, now)

    return ctx.run(work)


def admin_passkey_verify(ctx: Context, body: Mapping[str, Any], ip: str) -> AdminStepUp:
    authentication = parse_response(AuthenticationResponse, body)
    credential_id = websafe_encode(authentication.raw_id)
    value = authentication.response.client_data.challenge

    def work(db: Tx, now: float) -> AdminStepUp:
        challenge = _take_challenge(ctx, db, value, "admin_step_up", now)
        try:
            row = verify_assertion(ctx, db, challenge, authentication, credential_id, ip, now)
            admin = _admin_account(ctx, db, row["email"])  # still an admin
        except PolicyError as error:
            raise _spending(ctx, value, error) from None
        return _admin_verified(ctx, db, admin, "passkey", ip, now)

    return ctx.run(work)


def require_admin(
    ctx: Context, db: Tx, token: str | None, action: str, email: str, ip: str, now: float
) -> str:
    """The admin whose step-up ``token`` is, if it is less than STEP_UP_TTL old and its account is still
    an admin's; else the action is refused with ``step_up_required`` (audited, for the account ``email``
    it was aimed at)."""
    row = None
    if token:
        row = db.one(
            "SELECT s.created_at, u.email FROM admin_step_ups s JOIN users u ON u.id = s.user_id "
            "WHERE s.token_hash = ?",
            (token_hash(token),),
        )
    if (
        row is not None
        and now - row["created_at"] < STEP_UP_TTL
        and row["email"] in ctx.settings.admin_emails
    ):
        return str(row["email"])

    def record(db: Tx) -> None:
        ctx.audit(db, "step_up_required", email, ip, reason="step_up_required", action=action, by="admin")

    message = ADMIN_STEP_UP_MESSAGE if ctx.settings.admin_emails else NO_ADMINS
    raise PolicyError("step_up_required", message, record, extra={"step_up": ADMIN_STEP_UP_NEEDS})
