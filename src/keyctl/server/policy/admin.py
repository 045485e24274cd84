"""Invites and the admin API: the bearer token, invite links (create, list, revoke, accept), accounts
(list, delete), an admin's passkey rename and removal, technicians' enrollment sessions, and resetting an
account's 2FA. Every admin change is an audit event with ``by``: ``admin`` (the token), or for the
actions that remove an account's protection (delete it, reset its 2FA, delete a passkey), which need a
named admin's step-up (``step_up.require_admin``), that admin's email."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from keyctl.server import passwords
from keyctl.server.policy import sessions, step_up
from keyctl.server.policy.accounts import insert_user
from keyctl.server.policy.core import (
    ACTIVE,
    INVITE_TTL,
    LIMIT_MESSAGE,
    MAX_PASSKEYS,
    PASSKEY_ENROLLMENT,
    PENDING_TTL,
    Context,
    Passkey,
    PolicyError,
    User,
    check_name,
    credential_id_bytes,
    normalize_email,
    passkey_view,
    token_hash,
)
from keyctl.server.storage import Row, Tx


@dataclass(frozen=True)
class Invite:
    """A pending invite (not used, not expired). Its id is the stored hash of the link's token: it names
    the invite without revealing the link."""

    id: str
    email: str
    created_at: float
    expires_at: float


def check_admin(ctx: Context, bearer: str | None) -> None:
    expected = ctx.settings.admin_token.encode()
    if not (expected and bearer and hmac.compare_digest(bearer.encode(), expected)):
        raise PolicyError("unauthorized", "the admin API needs 'Authorization: Bearer <admin token>'")


def invite(ctx: Context, email: str) -> tuple[str, float]:
    """An invite link for a new account (also written to the outbox) and when it expires."""
    email = normalize_email(email)
    token = secrets.token_urlsafe(24)
    link = f"{ctx.settings.origin}/invite/{token}"

    def work(db: Tx, now: float) -> tuple[str, float]:
        if ctx.user_by_email(db, email) is not None:
            raise PolicyError("user_exists", f"an account for {email} already exists")
        db.execute(
            "INSERT INTO invites (token_hash, email, created_at) VALUES (?, ?, ?)",
            (token_hash(token), email, now),
        )
        ctx.audit(db, "invite_created", email, None)
        ctx.mail(email, "You are invited: choose a password", link, now)
        return link, now + INVITE_TTL

    return ctx.run(work)


def accept_invite(ctx: Context, token: str, password: str, ip: str) -> User:
    weak = passwords.weakness(password)
    if weak is not None:
        raise PolicyError("weak_password", weak)
    hashed = passwords.hash_password(password)

    def work(db: Tx, now: float) -> User:
        found = db.one("SELECT * FROM invites WHERE token_hash = ?", (token_hash(token),))
        if found is None or now - found["created_at"] > INVITE_TTL:
            raise PolicyError("not_found", "this invite link is unknown, used or expired: ask for a new one")
        email = found["email"]
        db.execute("DELETE FROM invites WHERE email = ?", (email,))
        if ctx.user_by_email(db, email) is not None:
            raise PolicyError("user_exists", f"an account for {email} already exists")
        insert_user(db, email, hashed, now)
        ctx.audit(db, "user_created", email, ip, by="invite")
        row = ctx.user_by_email(db, email)
        assert row is not None
        return ctx.user_view(db, row)

    return ctx.run(work)


def _admin_user(ctx: Context, db: Tx, email: str) -> Row:
    row = ctx.user_by_email(db, email.strip().lower())
    if row is None:
        raise PolicyError("not_found", f"no account {email}")
    return row


def admin_users(ctx: Context, limit: int, cursor: int) -> tuple[list[User], int | None]:
    def work(db: Tx, now: float) -> tuple[list[User], int | None]:
        rows = db.all("SELECT * FROM users WHERE id > ? ORDER BY id LIMIT ?", (cursor, limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        return [ctx.user_view(db, r) for r in rows], (rows[-1]["id"] if more else None)

    return ctx.run(work)


def admin_delete_user(ctx: Context, email: str, step_up_token: str | None, ip: str) -> None:
    """Delete an account with its passkeys and sessions (signed in or not), and its pending invites (an
    old link must not create the account again). Failed-attempt counts stay: they exist for unknown
    emails too, and a block must outlive the account it protected."""

    def work(db: Tx, now: float) -> None:
        user = _admin_user(ctx, db, email)
        by = step_up.require_admin(ctx, db, step_up_token, "delete_user", user["email"], ip, now)
        passkeys = len(ctx.passkey_rows(db, user["id"]))
        db.execute("DELETE FROM ceremony_challenges WHERE user_id = ?", (user["id"],))
        db.execute("DELETE FROM passkeys WHERE user_id = ?", (user["id"],))
        db.execute("DELETE FROM sessions WHERE user_id = ?", (user["id"],))
        db.execute("DELETE FROM invites WHERE email = ?", (user["email"],))
        db.execute("DELETE FROM admin_step_ups WHERE user_id = ?", (user["id"],))
        db.execute("DELETE FROM users WHERE id = ?", (user["id"],))
        ctx.audit(db, "user_deleted", user["email"], ip, by=by, passkeys=passkeys)

    ctx.run(work)


def admin_invites(ctx: Context) -> list[Invite]:
    """The pending invites, oldest first."""

    def work(db: Tx, now: float) -> list[Invite]:
        rows = db.all(
            "SELECT * FROM invites WHERE created_at >= ? ORDER BY created_at, token_hash",
            (now - INVITE_TTL,),
        )
        return [
            Invite(r["token_hash"], r["email"], r["created_at"], r["created_at"] + INVITE_TTL) for r in rows
        ]

    return ctx.run(work)


def admin_revoke_invite(ctx: Context, invite_id: str) -> Invite:
    def work(db: Tx, now: float) -> Invite:
        row = db.one(
            "SELECT * FROM invites WHERE token_hash = ? AND created_at >= ?", (invite_id, now - INVITE_TTL)
        )
        if row is None:
            raise PolicyError("not_found", "no such pending invite (used, expired or revoked)")
        db.execute("DELETE FROM invites WHERE token_hash = ?", (invite_id,))
        ctx.audit(db, "invite_revoked", row["email"], None, by="admin", invite_id=invite_id)
        return Invite(row["token_hash"], row["email"], row["created_at"], row["created_at"] + INVITE_TTL)

    return ctx.run(work)


def admin_rename_passkey(ctx: Context, email: str, credential_id: str, name: str) -> Passkey:
    raw = credential_id_bytes(credential_id)
    name = check_name(name)

    def work(db: Tx, now: float) -> Passkey:
        user = _admin_user(ctx, db, email)
        if not db.execute(
            "UPDATE passkeys SET name = ? WHERE credential_id = ? AND user_id = ?", (name, raw, user["id"])
        ):
            raise PolicyError("not_found", "no such passkey for this account")
        ctx.audit(
            db, "passkey_renamed", user["email"], None, credential_id=credential_id, name=name, by="admin"
        )
        row = db.one("SELECT * FROM passkeys WHERE credential_id = ?", (raw,))
        assert row is not None
        return passkey_view(row)

    return ctx.run(work)


def admin_delete_passkey(
    ctx: Context, email: str, credential_id: str, step_up_token: str | None, ip: str
) -> None:
    raw = credential_id_bytes(credential_id)

    def work(db: Tx, now: float) -> None:
        user = _admin_user(ctx, db, email)
        by = step_up.require_admin(ctx, db, step_up_token, "delete_passkey", user["email"], ip, now)
        if not db.execute("DELETE FROM passkeys WHERE credential_id = ? AND user_id = ?", (raw, user["id"])):
            raise PolicyError("not_found", "no such passkey for this account")
        ctx.audit(db, "passkey_deleted", user["email"], ip, credential_id=credential_id, by=by)

    ctx.run(work)


def admin_enrollment(ctx: Context, email: str, ip: str) -> tuple[str, str, float]:
    """A technician's enrollment session for one account: its token, the account, when it expires.

    It may only ask for registration options and register one passkey (then it ends); it expires like
    a sign-in in progress (PENDING_TTL) and replaces the account's previous enrollment session."""

    def work(db: Tx, now: float) -> tuple[str, str, float]:
        user = _admin_user(ctx, db, email)
        if len(ctx.passkey_rows(db, user["id"])) >= MAX_PASSKEYS:
            raise ctx.refuse(
                "passkey_limit", LIMIT_MESSAGE, "enrollment_refused", user["email"], ip, by="admin"
            )
        db.execute("DELETE FROM sessions WHERE user_id = ? AND stage = ?", (user["id"], PASSKEY_ENROLLMENT))
        token = sessions.new_session(db, user["id"], PASSKEY_ENROLLMENT, now)
        ctx.audit(db, "enrollment_session_created", user["email"], ip, by="admin")
        return token, user["email"], now + PENDING_TTL

    return ctx.run(work)


def admin_reset_2fa(ctx: Context, email: str, step_up_token: str | None, ip: str) -> User:
    def work(db: Tx, now: float) -> User:
        user = _admin_user(ctx, db, email)
        by = step_up.require_admin(ctx, db, step_up_token, "reset_2fa", user["email"], ip, now)
        db.execute(
            "UPDATE users SET totp_secret = NULL, totp_last_step = 0, recovery_hash = NULL WHERE id = ?",
            (user["id"],),
        )
        db.execute("DELETE FROM sessions WHERE user_id = ? AND stage != ?", (user["id"], ACTIVE))
        ctx.audit(db, "totp_reset", user["email"], ip, by=by)
        return ctx.user_view(db, _admin_user(ctx, db, email))

    return ctx.run(work)
