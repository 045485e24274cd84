"""Forgotten passwords: a single-use reset link, valid 24 hours, sent to the outbox on the user's request
(the same answer whether or not the account exists) or an admin's; setting the new password applies the
password rules and the breached-password list, ends every session of the account, and keeps its TOTP,
recovery code and passkeys."""

from __future__ import annotations

import secrets

from keyctl.server import passwords
from keyctl.server.policy.core import RESET_TTL, Context, PolicyError, normalize_email, token_hash
from keyctl.server.storage import Row, Tx

RESET_SUBJECT = "Reset your password"


def _send_link(ctx: Context, db: Tx, user: Row, now: float) -> tuple[str, float]:
    token = secrets.token_urlsafe(24)
    db.execute(
        "INSERT INTO password_resets (token_hash, user_id, created_at) VALUES (?, ?, ?)",
        (token_hash(token), user["id"], now),
    )
    link = f"{ctx.settings.origin}/reset/{token}"
    ctx.mail(user["email"], RESET_SUBJECT, link, now)
    return link, now + RESET_TTL


def request_reset(ctx: Context, email: str, ip: str) -> None:
    """A user's "Forgot password": a link to the outbox if the account exists; the answer never says."""
    email = normalize_email(email)

    def work(db: Tx, now: float) -> None:
        user = ctx.user_by_email(db, email)
        if user is not None:
            _send_link(ctx, db, user, now)
        ctx.audit(db, "password_reset_requested", email, ip, known=user is not None)

    ctx.run(work)


def admin_reset_link(ctx: Context, email: str) -> tuple[str, float]:
    """An admin sends a reset link (to the outbox, and in the answer): the link and when it expires."""

    def work(db: Tx, now: float) -> tuple[str, float]:
        user = ctx.user_by_email(db, email.strip().lower())
        if user is None:
            raise PolicyError("not_found", f"no account {email.strip().lower()}")
        ctx.audit(db, "password_reset_requested", user["email"], None, by="admin", known=True)
        return _send_link(ctx, db, user, now)

    return ctx.run(work)


def reset_password(ctx: Context, token: str, new_password: str, ip: str) -> str:
    """Set a new password through a reset link; the account's email."""
    weak = passwords.weakness(new_password)
    if weak is not None:
        raise PolicyError("weak_password", weak)
    ctx.db.run(lambda db: _valid_link(db, token, ctx.clock()))  # before a slow hash is spent on it
    hashed = passwords.hash_password(new_password)

    def work(db: Tx, now: float) -> str:
        link = _valid_link(db, token, now)
        user = ctx.user_by_id(db, link["user_id"])
        db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (hashed, user["id"]))
        db.execute("DELETE FROM password_resets WHERE user_id = ?", (user["id"],))  # every link, used or not
        db.execute("DELETE FROM sessions WHERE user_id = ?", (user["id"],))
        ctx.audit(db, "password_changed", user["email"], ip, reason="reset")
        return str(user["email"])

    return ctx.run(work)


def _valid_link(db: Tx, token: str, now: float) -> Row:
    link = db.one("SELECT * FROM password_resets WHERE token_hash = ?", (token_hash(token),))
    if link is None or now - link["created_at"] > RESET_TTL:
        raise PolicyError("not_found", "this reset link is unknown, used or expired: ask for a new one")
    return link
