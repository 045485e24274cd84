"""Attack protection: the per-IP request rate, failed attempts per IP and account (blocking at the limit,
with an unblock link), suspicious-IP throttling across accounts, and the admin's view of the blocks."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

from keyctl.server.policy.core import IP_REFILL_PERIOD, Context, PolicyError, token_hash
from keyctl.server.storage import Row, Tx


@dataclass(frozen=True)
class Block:
    ip: str
    email: str
    since: float


@dataclass(frozen=True)
class IpBlock:
    ip: str
    since: float
    until: float  # when enough of the allowance has refilled for one more attempt


def check_rate(ctx: Context, ip: str) -> None:
    """Count one request on an auth endpoint; refuse beyond the per-IP limit per minute (counted in the
    database, so the limit holds across every server process)."""
    limited = ctx.rates.hit(ip, ctx.clock())
    if limited is not None:
        retry = limited.retry_after
        raise PolicyError("rate_limited", f"too many requests: try again in {retry} s", retry_after=retry)


def failure(ctx: Context, email: str, ip: str, code: str, message: str, event: str) -> PolicyError:
    """A failed password or 2FA attempt: counted per IP and account, blocking at the limit."""

    def record(db: Tx) -> None:
        now = ctx.clock()
        ctx.audit(db, event, email, ip, reason=code)
        row = db.one(
            "INSERT INTO failures (ip, email, count) VALUES (?, ?, 1) "
            "ON CONFLICT (ip, email) DO UPDATE SET count = failures.count + 1 RETURNING count",
            (ip, email),
        )
        assert row is not None
        _spend_ip_allowance(ctx, db, ip, now)
        count = row["count"]
        if count < ctx.settings.max_failures:
            return
        link_token = secrets.token_urlsafe(24)
        db.execute(
            "UPDATE failures SET blocked_since = ?, unblock_hash = ? WHERE ip = ? AND email = ?",
            (now, token_hash(link_token), ip, email),
        )
        ctx.audit(db, "signin_blocked", email, ip, failures=count)
        if ctx.user_by_email(db, email) is not None:
            ctx.mail(
                email,
                "Sign-in blocked after failed attempts",
                f"{ctx.settings.origin}/unblock/{link_token}",
                now,
            )

    return PolicyError(code, message, record)


def _ip_allowance(ctx: Context, row: Row | None, now: float) -> float:
    """Failed sign-ins the IP may still make: a bucket of ``ip_max_failures`` refilled over a day."""
    full = float(ctx.settings.ip_max_failures)
    if row is None:
        return full
    refilled: float = row["allowance"] + (now - row["updated_at"]) * full / IP_REFILL_PERIOD
    return min(full, refilled)


def _spend_ip_allowance(ctx: Context, db: Tx, ip: str, now: float) -> None:
    """Suspicious-IP throttling (as Auth0 defines it): failed sign-ins from one IP, whatever the
    accounts, use up its allowance; when it is empty the IP is blocked until it refills or an admin
    lifts the block. Independent of the per-account block and of the request rate limit."""
    row = db.one("SELECT * FROM ip_failures WHERE ip = ?", (ip,))
    allowance = _ip_allowance(ctx, row, now) - 1
    blocked_since = row["blocked_since"] if row is not None else None
    if allowance < 1 and blocked_since is None:
        blocked_since = now
        ctx.audit(db, "ip_blocked", None, ip, failures=ctx.settings.ip_max_failures)
    db.execute(
        "INSERT INTO ip_failures (ip, allowance, updated_at, blocked_since) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (ip) DO UPDATE SET allowance = excluded.allowance, "
        "updated_at = excluded.updated_at, blocked_since = excluded.blocked_since",
        (ip, allowance, now, blocked_since),
    )


def _ip_block_until(ctx: Context, row: Row, now: float) -> float:
    missing = 1 - _ip_allowance(ctx, row, now)
    return now + max(0.0, missing) * IP_REFILL_PERIOD / ctx.settings.ip_max_failures


def _check_ip_not_blocked(ctx: Context, db: Tx, ip: str, now: float) -> None:
    row = db.one("SELECT * FROM ip_failures WHERE ip = ?", (ip,))
    if row is None or row["blocked_since"] is None:
        return
    until = _ip_block_until(ctx, row, now)
    if until <= now:  # refilled enough for another attempt: the block lapses
        db.execute("UPDATE ip_failures SET blocked_since = NULL WHERE ip = ?", (ip,))
        return
    retry = max(1, math.ceil(until - now))

    def record(db: Tx) -> None:
        ctx.audit(db, "signin_refused_ip_blocked", None, ip)

    raise PolicyError(
        "ip_blocked",
        f"too many failed sign-ins from this address: try again in {math.ceil(retry / 60)} min",
        record,
        retry_after=retry,
    )


def check_not_blocked(ctx: Context, db: Tx, email: str, ip: str) -> None:
    _check_ip_not_blocked(ctx, db, ip, ctx.clock())
    row = db.one("SELECT blocked_since FROM failures WHERE ip = ? AND email = ?", (ip, email))
    if row is not None and row["blocked_since"] is not None:
        raise ctx.refuse(
            "blocked",
            "sign-in blocked after too many failed attempts: use the unblock link sent to you",
            "signin_refused_blocked",
            email,
            ip,
        )


def unblock_link(ctx: Context, link_token: str) -> None:
    def work(db: Tx, now: float) -> None:
        row = db.one("SELECT ip, email FROM failures WHERE unblock_hash = ?", (token_hash(link_token),))
        if row is None:
            raise PolicyError("not_found", "this unblock link is unknown or was already used")
        db.execute("DELETE FROM failures WHERE ip = ? AND email = ?", (row["ip"], row["email"]))
        ctx.audit(db, "unblocked", row["email"], row["ip"], by="link")

    ctx.run(work)


def admin_blocks(ctx: Context) -> list[Block]:
    def work(db: Tx, now: float) -> list[Block]:
        rows = db.all(
            "SELECT ip, email, blocked_since FROM failures WHERE blocked_since IS NOT NULL "
            "ORDER BY blocked_since"
        )
        return [Block(r["ip"], r["email"], r["blocked_since"]) for r in rows]

    return ctx.run(work)


def admin_ip_blocks(ctx: Context) -> list[IpBlock]:
    def work(db: Tx, now: float) -> list[IpBlock]:
        rows = db.all("SELECT * FROM ip_failures WHERE blocked_since IS NOT NULL ORDER BY blocked_since")
        blocks = [IpBlock(r["ip"], r["blocked_since"], _ip_block_until(ctx, r, now)) for r in rows]
        return [b for b in blocks if b.until > now]

    return ctx.run(work)


def admin_unblock(ctx: Context, ip: str, email: str | None) -> int:
    def work(db: Tx, now: float) -> int:
        if email is None:
            # All of that IP's blocks: its accounts', and the suspicious-IP block (its allowance refills).
            if db.execute("DELETE FROM ip_failures WHERE ip = ? AND blocked_since IS NOT NULL", (ip,)):
                ctx.audit(db, "ip_unblocked", None, ip, by="admin")
            count = db.execute("DELETE FROM failures WHERE ip = ? AND blocked_since IS NOT NULL", (ip,))
        else:
            count = db.execute(
                "DELETE FROM failures WHERE ip = ? AND email = ? AND blocked_since IS NOT NULL",
                (ip, email.strip().lower()),
            )
        if count:
            ctx.audit(db, "unblocked", email, ip, by="admin", blocks=count)
        return count

    return ctx.run(work)
