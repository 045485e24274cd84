"""Two-factor authentication: TOTP enrollment (secret, first code, recovery code confirmed), the TOTP and
recovery-code steps of a sign-in, and turning a completed sign-in into a signed-in session."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from keyctl.server import twofactor
from keyctl.server.policy import prompt, protection, risk, sessions
from keyctl.server.policy.core import (
    ACTIVE,
    CODE,
    ENROLL,
    RECOVERY_CONFIRM,
    TOTP,
    Context,
    Expiry,
    PolicyError,
    SignedIn,
)
from keyctl.server.storage import Row, Tx


@dataclass(frozen=True)
class Enrollment:
    secret: str
    otpauth_uri: str
    qr_svg: str


def complete_signin(
    ctx: Context, db: Tx, session: Row, method: str, ip: str, now: float, **extra: Any
) -> SignedIn:
    """Turn a sign-in in progress into a signed-in session with a fresh token."""
    user_id = session["user_id"]
    db.execute("DELETE FROM sessions WHERE token_hash = ?", (session["token_hash"],))
    db.execute("DELETE FROM failures WHERE ip = ? AND email = ?", (ip, session["email"]))
    db.execute(
        "UPDATE users SET last_sign_in_at = ?, signins_since_skip = signins_since_skip + 1 WHERE id = ?",
        (now, user_id),
    )
    user = ctx.user_by_id(db, user_id)
    token = sessions.new_session(db, user_id, ACTIVE, now)
    risk.record_location(db, user_id, ip, now)
    ctx.audit(db, "signin_ok", session["email"], ip, method=method)
    due = prompt.prompt_due(user, len(ctx.passkey_rows(db, user_id)), now)
    return SignedIn(
        token=token,
        email=session["email"],
        method=method,
        passkey_prompt=due,
        expiry=Expiry.of(now, now),
        **extra,
    )


def _check_still_unenrolled(db: Tx, session: Row) -> None:
    """An enrollment step of a sign-in that started before another one finished enrolling must not
    replace the secret and recovery code that sign-in set up."""
    user = db.one("SELECT totp_secret FROM users WHERE id = ?", (session["user_id"],))
    if user is not None and user["totp_secret"] is not None:
        raise PolicyError(
            "session_expired",
            "Session expired: two-factor authentication was set up meanwhile; sign in again",
        )


def totp_enroll(ctx: Context, token: str | None) -> Enrollment:
    def work(db: Tx, now: float) -> Enrollment:
        session = sessions.session(db, token, ENROLL, now)
        _check_still_unenrolled(db, session)
        secret = session["pending_secret"]
        if secret is None:
            secret = twofactor.new_secret()
            db.execute(
                "UPDATE sessions SET pending_secret = ? WHERE token_hash = ?", (secret, session["token_hash"])
            )
        uri = twofactor.otpauth_uri(secret, session["email"])
        return Enrollment(secret=secret, otpauth_uri=uri, qr_svg=twofactor.qr_svg(uri))

    return ctx.run(work)


def totp_enroll_verify(ctx: Context, token: str | None, code: str, ip: str) -> str:
    """Check the first code of a new TOTP secret; return the recovery code to confirm."""

    def work(db: Tx, now: float) -> str:
        session = sessions.session(db, token, ENROLL, now)
        _check_still_unenrolled(db, session)
        protection.check_not_blocked(ctx, db, session["email"], ip)
        secret = session["pending_secret"]
        if secret is None:
            raise PolicyError("invalid_request", "ask for the TOTP secret first (/api/signin/totp/enroll)")
        step = twofactor.matching_step(secret, code, now) if CODE.fullmatch(code) else None
        if step is None:
            raise protection.failure(
                ctx, session["email"], ip, "invalid_code", "Incorrect code", "signin_failed"
            )
        recovery = twofactor.new_recovery_code()
        db.execute(
            "UPDATE sessions SET stage = ?, pending_recovery_hash = ?, pending_step = ? WHERE token_hash = ?",
            (RECOVERY_CONFIRM, twofactor.recovery_hash(recovery), step, session["token_hash"]),
        )
        return recovery

    return ctx.run(work)


def recovery_confirm(ctx: Context, token: str | None, code: str, ip: str) -> SignedIn:
    def work(db: Tx, now: float) -> SignedIn:
        session = sessions.session(db, token, RECOVERY_CONFIRM, now)
        _check_still_unenrolled(db, session)
        if not hmac.compare_digest(twofactor.recovery_hash(code), session["pending_recovery_hash"]):
            raise PolicyError("invalid_code", "that is not the recovery code shown: type it again")
        # The enrollment code's step counts as used, so that code cannot be replayed at the next sign-in.
        db.execute(
            "UPDATE users SET totp_secret = ?, totp_last_step = ?, recovery_hash = ? WHERE id = ?",
            (
                session["pending_secret"],
                session["pending_step"],
                session["pending_recovery_hash"],
                session["user_id"],
            ),
        )
        ctx.audit(db, "totp_enrolled", session["email"], ip)
        return complete_signin(ctx, db, session, "totp", ip, now)

    return ctx.run(work)


def _enrolled_user(ctx: Context, db: Tx, session: Row) -> Row:
    """The account of a 2FA step, read in the step's transaction; an admin reset since the password
    step leaves it without a secret: that sign-in must start over (and enroll)."""
    user = ctx.user_by_id(db, session["user_id"])
    if user["totp_secret"] is None or user["recovery_hash"] is None:
        raise PolicyError(
            "session_expired", "Session expired: two-factor authentication was reset; sign in again"
        )
    return user


def signin_totp(ctx: Context, token: str | None, code: str, ip: str) -> SignedIn:
    def work(db: Tx, now: float) -> SignedIn:
        session = sessions.session(db, token, TOTP, now)
        email = session["email"]
        protection.check_not_blocked(ctx, db, email, ip)
        user = _enrolled_user(ctx, db, session)
        step = twofactor.matching_step(user["totp_secret"], code, now) if CODE.fullmatch(code) else None
        if step is None:
            raise protection.failure(ctx, email, ip, "invalid_code", "Incorrect code", "signin_failed")
        if step <= user["totp_last_step"]:
            raise protection.failure(
                ctx,
                email,
                ip,
                "invalid_code",
                "That code was already used: wait for the next one",
                "signin_failed",
            )
        db.execute("UPDATE users SET totp_last_step = ? WHERE id = ?", (step, user["id"]))
        return complete_signin(ctx, db, session, "totp", ip, now)

    return ctx.run(work)


def signin_recovery(ctx: Context, token: str | None, code: str, ip: str) -> SignedIn:
    def work(db: Tx, now: float) -> SignedIn:
        session = sessions.session(db, token, TOTP, now)
        email = session["email"]
        protection.check_not_blocked(ctx, db, email, ip)
        user = _enrolled_user(ctx, db, session)
        if not hmac.compare_digest(twofactor.recovery_hash(code), user["recovery_hash"]):
            raise protection.failure(
                ctx, email, ip, "invalid_code", "Incorrect recovery code", "signin_failed"
            )
        new_code = twofactor.new_recovery_code()
        db.execute(
            "UPDATE users SET recovery_hash = ? WHERE id = ?", (twofactor.recovery_hash(new_code), user["id"])
        )
        ctx.audit(db, "recovery_code_used", email, ip)
        return complete_signin(ctx, db, session, "recovery", ip, now, new_recovery_code=new_code)

    return ctx.run(work)
