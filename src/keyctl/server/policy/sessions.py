"""Sessions: the cookie's token (stored hashed), its stage (a sign-in in progress or signed in), idle and
absolute expiry, sign-out, and forgetting expired ones."""

from __future__ import annotations

import secrets

from keyctl.server.policy.core import (
    ABSOLUTE_TTL,
    ACTIVE,
    ENROLL,
    IDLE_TTL,
    PASSKEY_ENROLLMENT,
    PASSWORD_CHANGE,
    PENDING_TTL,
    RECOVERY_CONFIRM,
    STEP_UP_TTL,
    TOTP,
    Context,
    PolicyError,
    token_hash,
)
from keyctl.server.storage import Row, Tx


def new_session(db: Tx, user_id: int, stage: str, now: float) -> str:
    token = secrets.token_urlsafe(32)
    db.execute(
        "INSERT INTO sessions (token_hash, user_id, stage, created_at, last_seen_at, verified_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (token_hash(token), user_id, stage, now, now, now),  # a sign-in is a verification (step-up)
    )
    return token


def session(db: Tx, token: str | None, stage: str, now: float, enrollment: bool = False) -> Row:
    """The session behind a cookie, in the given stage and not expired (``enrollment``: an admin-issued
    enrollment session is accepted too)."""
    row: Row | None = None
    if token:
        row = db.one(
            "SELECT s.*, u.email FROM sessions s JOIN users u ON u.id = s.user_id WHERE token_hash = ?",
            (token_hash(token),),
        )
    if row is None:
        raise PolicyError("not_signed_in", "not signed in")
    if row["stage"] == ACTIVE:
        if now - row["last_seen_at"] > IDLE_TTL or now - row["created_at"] > ABSOLUTE_TTL:
            raise PolicyError("session_expired", "Session expired: sign in again")
    elif now - row["created_at"] > PENDING_TTL:
        raise PolicyError("session_expired", "Session expired: sign in again")
    if row["stage"] != stage and not (enrollment and row["stage"] == PASSKEY_ENROLLMENT):
        if row["stage"] == PASSKEY_ENROLLMENT:
            raise PolicyError("not_signed_in", "an enrollment session can only register a passkey")
        if row["stage"] == TOTP:
            raise PolicyError("totp_required", "enter the code from your authenticator app first")
        if row["stage"] == PASSWORD_CHANGE:
            raise PolicyError(
                "password_change_required",
                "choose a new password first: this one is in a list of breached passwords",
            )
        if row["stage"] in (ENROLL, RECOVERY_CONFIRM):
            raise PolicyError("totp_enrollment_required", "finish setting up two-factor authentication")
        raise PolicyError("invalid_request", "already signed in")
    if stage == ACTIVE:
        db.execute("UPDATE sessions SET last_seen_at = ? WHERE token_hash = ?", (now, row["token_hash"]))
    return row


STEP_UP_MESSAGE = (
    "Confirm it's you: this action needs a fresh verification (a code from your authenticator app or a "
    f"passkey, at most {STEP_UP_TTL // 60} minutes old)"
)


def require_step_up(ctx: Context, session: Row, action: str, ip: str, now: float) -> None:
    """Refuse a sensitive action (audited) unless the session verified its user less than STEP_UP_TTL ago
    (a sign-in, or a step-up: ``policy.step_up``). Admin-issued enrollment sessions are not asked."""
    verified_at = session["verified_at"] if session["verified_at"] is not None else session["created_at"]
    if session["stage"] == ACTIVE and now - verified_at >= STEP_UP_TTL:
        raise ctx.refuse(
            "step_up_required", STEP_UP_MESSAGE, "step_up_required", session["email"], ip, action=action
        )


def signout(ctx: Context, token: str | None, ip: str) -> None:
    def work(db: Tx, now: float) -> None:
        if not token:
            raise PolicyError("not_signed_in", "not signed in")
        row = db.one(
            "SELECT u.email FROM sessions s JOIN users u ON u.id = s.user_id WHERE token_hash = ?",
            (token_hash(token),),
        )
        if row is None:
            raise PolicyError("not_signed_in", "not signed in")
        db.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash(token),))
        ctx.audit(db, "signout", row["email"], ip)

    ctx.run(work)


def cleanup(ctx: Context) -> None:
    """Forget expired sessions (at start-up)."""

    def work(db: Tx, now: float) -> None:
        db.execute("DELETE FROM sessions WHERE created_at < ?", (now - ABSOLUTE_TTL,))

    ctx.run(work)
