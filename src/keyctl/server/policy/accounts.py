"""Accounts and passwords: creating an account, the password step of a sign-in (slow hash, breached
passwords, the step to the second factor), and the password change a breached password leads to."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from keyctl.server import passwords
from keyctl.server.policy import protection, sessions
from keyctl.server.policy.core import (
    ACTIVE,
    ENROLL,
    PASSWORD_CHANGE,
    TOTP,
    Context,
    PolicyError,
    User,
    normalize_email,
)
from keyctl.server.storage import Row, Tx


@dataclass(frozen=True)
class PasswordStep:
    token: str
    status: str  # "totp_required" | "totp_enrollment_required" | "password_change_required"


def insert_user(db: Tx, email: str, password_hash: str, now: float) -> None:
    db.execute(
        "INSERT INTO users (email, password_hash, user_handle, created_at) VALUES (?, ?, ?, ?)",
        (email, password_hash, secrets.token_bytes(32), now),
    )


def create_user(ctx: Context, email: str, password: str, ip: str | None = None) -> User:
    email = normalize_email(email)
    weak = passwords.weakness(password)
    if weak is not None:
        raise PolicyError("weak_password", weak)
    hashed = passwords.hash_password(password)

    def work(db: Tx, now: float) -> User:
        if ctx.user_by_email(db, email) is not None:
            raise PolicyError("user_exists", f"an account for {email} already exists")
        insert_user(db, email, hashed, now)
        ctx.audit(db, "user_created", email, ip)
        row = ctx.user_by_email(db, email)
        assert row is not None
        return ctx.user_view(db, row)

    return ctx.run(work)


def signin_password(ctx: Context, email: str, password: str, ip: str) -> PasswordStep:
    email = email.strip().lower()
    row = ctx.db.run(lambda db: ctx.user_by_email(db, email))
    # The slow hash runs outside any transaction, and as slowly for an unknown email as for a wrong password.
    ok = passwords.verify_password(password, row["password_hash"] if row else passwords.dummy_hash())
    breached = ok and passwords.breached(password)

    def work(db: Tx, now: float) -> PasswordStep:
        protection.check_not_blocked(ctx, db, email, ip)
        # Re-read: an admin may have reset 2FA (or a password change landed) during the slow hash.
        current = ctx.user_by_email(db, email)
        if row is None or not ok or current is None or current["password_hash"] != row["password_hash"]:
            raise protection.failure(
                ctx, email, ip, "invalid_credentials", "Incorrect email or password", "signin_failed"
            )
        if breached:
            token = sessions.new_session(db, current["id"], PASSWORD_CHANGE, now)
            ctx.audit(db, "signin_password_breached", email, ip)
            return PasswordStep(token=token, status="password_change_required")
        ctx.audit(db, "signin_password_ok", email, ip)
        return second_factor_step(db, current, now)

    return ctx.run(work)


def second_factor_step(db: Tx, user: Row, now: float) -> PasswordStep:
    stage = TOTP if user["totp_secret"] is not None else ENROLL
    token = sessions.new_session(db, user["id"], stage, now)
    status = "totp_required" if stage == TOTP else "totp_enrollment_required"
    return PasswordStep(token=token, status=status)


def change_password(ctx: Context, token: str | None, new_password: str, ip: str) -> PasswordStep:
    """The step after a password sign-in with a breached password: a new password, then the 2FA step.
    The account's other sessions end; this sign-in continues under a new token."""
    weak = passwords.weakness(new_password)
    if weak is not None:
        raise PolicyError("weak_password", weak)
    # The session is checked before a slow hash is spent on it.
    ctx.db.run(lambda db: sessions.session(db, token, PASSWORD_CHANGE, ctx.clock()))
    hashed = passwords.hash_password(new_password)

    def work(db: Tx, now: float) -> PasswordStep:
        session = sessions.session(db, token, PASSWORD_CHANGE, now)
        db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (hashed, session["user_id"]))
        db.execute("DELETE FROM sessions WHERE user_id = ?", (session["user_id"],))
        ctx.audit(db, "password_changed", session["email"], ip, reason="breached")
        return second_factor_step(db, ctx.user_by_id(db, session["user_id"]), now)

    return ctx.run(work)


def change_own_password(ctx: Context, token: str | None, new_password: str, ip: str) -> None:
    """A signed-in user's password change (a sensitive action: step-up). The account's other sessions
    end; this one stays."""
    weak = passwords.weakness(new_password)
    if weak is not None:
        raise PolicyError("weak_password", weak)

    def check(db: Tx, now: float) -> None:  # before a slow hash is spent on it
        sessions.require_step_up(ctx, sessions.session(db, token, ACTIVE, now), "change_password", ip, now)

    ctx.run(check)
    hashed = passwords.hash_password(new_password)

    def work(db: Tx, now: float) -> None:
        session = sessions.session(db, token, ACTIVE, now)
        sessions.require_step_up(ctx, session, "change_password", ip, now)
        db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (hashed, session["user_id"]))
        db.execute(
            "DELETE FROM sessions WHERE user_id = ? AND token_hash != ?",
            (session["user_id"], session["token_hash"]),
        )
        db.execute("DELETE FROM password_resets WHERE user_id = ?", (session["user_id"],))
        ctx.audit(db, "password_changed", session["email"], ip, reason="user")

    ctx.run(work)
