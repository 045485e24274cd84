"""The passkey prompt: after a sign-in without one, an account with no passkey is asked to add one, unless
it skipped (for 7 days or 10 sign-ins) or snoozed (30 days); and the signed-in user's page (``me``), with
the times its session ends."""

from __future__ import annotations

from dataclasses import dataclass

from keyctl.server.policy import sessions
from keyctl.server.policy.core import (
    ACTIVE,
    SKIP_SIGNINS,
    SKIP_TTL,
    SNOOZE_TTL,
    Context,
    Expiry,
    Passkey,
    PolicyError,
    passkey_view,
)
from keyctl.server.storage import Row, Tx


@dataclass(frozen=True)
class Me:
    email: str
    passkey_prompt: bool
    passkeys: tuple[Passkey, ...]
    expiry: Expiry
    now: float  # the server's time, for a page counting down to the expiry with its own clock


def prompt_due(user: Row, passkey_count: int, now: float) -> bool:
    if passkey_count > 0:
        return False
    if user["prompt_snoozed_until"] is not None and now < user["prompt_snoozed_until"]:
        return False
    skipped = user["prompt_skipped_at"]
    return not (
        skipped is not None and now - skipped < SKIP_TTL and user["signins_since_skip"] < SKIP_SIGNINS
    )


def me(ctx: Context, token: str | None) -> Me:
    def work(db: Tx, now: float) -> Me:
        session = sessions.session(db, token, ACTIVE, now)
        user = ctx.user_by_id(db, session["user_id"])
        passkeys = tuple(passkey_view(p) for p in ctx.passkey_rows(db, user["id"]))
        expiry = Expiry.of(session["created_at"], now)
        return Me(user["email"], prompt_due(user, len(passkeys), now), passkeys, expiry, now)

    return ctx.run(work)


def passkey_prompt(ctx: Context, token: str | None, action: str, ip: str) -> None:
    if action not in ("skip", "snooze"):
        raise PolicyError("invalid_request", "action must be 'skip' or 'snooze'")

    def work(db: Tx, now: float) -> None:
        session = sessions.session(db, token, ACTIVE, now)
        if action == "skip":
            db.execute(
                "UPDATE users SET prompt_skipped_at = ?, signins_since_skip = 0 WHERE id = ?",
                (now, session["user_id"]),
            )
        else:
            db.execute(
                "UPDATE users SET prompt_snoozed_until = ? WHERE id = ?",
                (now + SNOOZE_TTL, session["user_id"]),
            )
        ctx.audit(db, f"passkey_prompt_{action}", session["email"], ip)

    ctx.run(work)
