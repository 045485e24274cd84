"""Risk assessment of password sign-ins: a correct password from an IP address the account has never
completed a sign-in from is blocked (the attempt, not the account) when it also meets a risk condition:

- the account had RISK_ACCOUNT_FAILURES failed sign-ins (from anywhere) in the last RISK_WINDOW, or
- the address tried RISK_IP_ACCOUNTS different accounts in the last RISK_WINDOW.

An account that never completed a sign-in has no known address to compare with and is not assessed.
The block is an audit event (``risk_blocked``, with the user agent) and an alert in the outbox to every
admin address (``Settings.admin_emails``). A passkey sign-in is not assessed (a passkey cannot be phished
or guessed), and every completed sign-in adds its address to the account's known ones."""

from __future__ import annotations

import json
from dataclasses import dataclass

from keyctl.server.policy.core import Context, PolicyError
from keyctl.server.storage import Row, Tx

RISK_WINDOW = 3600
RISK_ACCOUNT_FAILURES = 3
RISK_IP_ACCOUNTS = 5
RISK_LIST_WINDOW = 7 * 24 * 3600  # what the admin list shows
RISK_MESSAGE = (
    "Sign-in blocked: an unusual sign-in from a new location. Sign in with a passkey, from a device you "
    "used before, or ask an admin"
)
_TRIED = ("signin_failed", "signin_password_ok", "signin_password_breached", "risk_blocked")


@dataclass(frozen=True)
class RiskBlock:
    time: float
    email: str
    ip: str
    user_agent: str
    reason: str


def record_location(db: Tx, user_id: int, ip: str, now: float) -> None:
    """A completed sign-in: the address is one the account is known to sign in from."""
    db.execute(
        "INSERT INTO signin_locations (user_id, ip, first_at, last_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (user_id, ip) DO UPDATE SET last_at = excluded.last_at",
        (user_id, ip, now, now),
    )


def _risk(db: Tx, user: Row, ip: str, now: float) -> str | None:
    """Why a sign-in from a new address is risky, or None."""
    since = now - RISK_WINDOW
    failures = db.one(
        "SELECT count(*) AS n FROM audit WHERE event = 'signin_failed' AND email = ? AND time > ?",
        (user["email"], since),
    )
    if failures is not None and failures["n"] >= RISK_ACCOUNT_FAILURES:
        return "new_location_after_failures"
    placeholders = ", ".join("?" for _ in _TRIED)
    others = db.one(
        "SELECT count(DISTINCT email) AS n FROM audit "
        f"WHERE ip = ? AND time > ? AND email != ? AND event IN ({placeholders})",
        (ip, since, user["email"], *_TRIED),
    )
    if others is not None and others["n"] + 1 >= RISK_IP_ACCOUNTS:
        return "new_location_many_accounts"
    return None


def assess(ctx: Context, db: Tx, user: Row, ip: str, user_agent: str, now: float) -> None:
    """Refuse a password sign-in (its password was right) that is risky; see the module's rules."""
    places = db.all("SELECT ip FROM signin_locations WHERE user_id = ?", (user["id"],))
    if not places or ip in {row["ip"] for row in places}:
        return  # a known address; or no sign-in yet, so no address is known to compare with
    reason = _risk(db, user, ip, now)
    if reason is None:
        return
    email = user["email"]

    def record(db: Tx) -> None:
        ctx.audit(db, "risk_blocked", email, ip, reason=reason, user_agent=user_agent)
        for admin in ctx.settings.admin_emails:
            ctx.mail(admin, f"Risky sign-in blocked: {email} from {ip}", f"{ctx.settings.origin}/", now)

    raise PolicyError("risk_blocked", RISK_MESSAGE, record)


def admin_risk_blocks(ctx: Context) -> list[RiskBlock]:
    def work(db: Tx, now: float) -> list[RiskBlock]:
        rows = db.all(
            "SELECT time, email, ip, detail FROM audit WHERE event = 'risk_blocked' AND time > ? "
            "ORDER BY id DESC",
            (now - RISK_LIST_WINDOW,),
        )
        blocks = []
        for row in rows:
            detail = json.loads(row["detail"])
            blocks.append(
                RiskBlock(row["time"], row["email"], row["ip"], detail["user_agent"], detail["reason"])
            )
        return blocks

    return ctx.run(work)
