"""Each policy module tested at its own boundary: its functions called directly on a ``Context`` over the
storage port, on an SQLite file and on a fresh database of the throwaway PostgreSQL (``db_target`` of
tests/server/conftest.py, the server suite's parametrisation), with the injected ``FakeClock``. What a
function wrote is read back through the same port; no HTTP server runs."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from keyctl.server import passwords, twofactor
from keyctl.server.policy import passkeys, sessions
from keyctl.server.policy.accounts import insert_user
from keyctl.server.policy.core import ACTIVE, Context, PolicyError, Settings
from keyctl.server.storage import Param, Row, open_database
from tests.server.conftest import EMAIL, PASSWORD, FakeClock
from tests.server.softauth import SoftAuthenticator

__all__ = ["EMAIL", "PASSWORD"]

ORIGIN = "http://localhost:8443"
ADMIN_TOKEN = "policy-admin-token"
ALERTS = ("security@example.com", "oncall@example.com")
IP = "203.0.113.7"
# Every table a refusal must leave as it was (the audit log is checked on its own).
TABLES = (
    "users",
    "passkeys",
    "sessions",
    "failures",
    "invites",
    "password_resets",
    "ip_failures",
    "signin_locations",
    "captchas",
    "ceremony_challenges",
    "admin_step_ups",
)


@pytest.fixture
def ctx(db_target: Path | str, clock: FakeClock, tmp_path: Path) -> Iterator[Context]:
    db = open_database(db_target, now=clock())
    settings = Settings(
        rp_id="localhost",
        origin=ORIGIN,
        outbox=tmp_path / "outbox" / "mail.jsonl",
        admin_token=ADMIN_TOKEN,
        admin_emails=ALERTS,
    )
    try:
        yield Context(db, settings, clock)
    finally:
        db.close()


def configured(ctx: Context, **settings: Any) -> Context:
    """The same database and clock under other settings."""
    return Context(ctx.db, dataclasses.replace(ctx.settings, **settings), ctx.clock)


def rows(ctx: Context, statement: str, params: tuple[Param, ...] = ()) -> list[Row]:
    return ctx.db.run(lambda tx: tx.all(statement, params))


def state(ctx: Context) -> dict[str, list[str]]:
    """Every table but the audit log, to show a refusal wrote nothing."""
    return {table: sorted(repr(r) for r in rows(ctx, f"SELECT * FROM {table}")) for table in TABLES}


def events(ctx: Context) -> list[tuple[str, str | None, str | None, dict[str, Any]]]:
    """The audit log in order: (event, email, ip, detail)."""
    return [
        (r["event"], r["email"], r["ip"], json.loads(r["detail"]))
        for r in rows(ctx, "SELECT * FROM audit ORDER BY id")
    ]


def names(ctx: Context) -> list[str]:
    return [event for event, *_ in events(ctx)]


def outbox(ctx: Context) -> list[dict[str, str]]:
    path = ctx.settings.outbox
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def refusal(call: Callable[[], object]) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        call()
    return caught.value


@functools.cache
def password_hash(password: str = PASSWORD) -> str:
    return passwords.hash_password(password)


def add_user(ctx: Context, email: str = EMAIL, password: str = PASSWORD) -> int:
    """An account with no second factor yet, written straight to the database; its id."""

    def work(tx: Any) -> int:
        insert_user(tx, email, password_hash(password), ctx.clock())
        row = tx.one("SELECT id FROM users WHERE email = ?", (email,))
        return int(row["id"])

    return int(ctx.db.run(work))


@dataclasses.dataclass(frozen=True)
class Enrolled:
    id: int
    email: str
    secret: str
    recovery_code: str


def add_enrolled(ctx: Context, email: str = EMAIL) -> Enrolled:
    """An account with TOTP and a recovery code."""
    user_id = add_user(ctx, email)
    secret, recovery = twofactor.new_secret(), twofactor.new_recovery_code()
    ctx.db.run(
        lambda tx: tx.execute(
            "UPDATE users SET totp_secret = ?, recovery_hash = ? WHERE id = ?",
            (secret, twofactor.recovery_hash(recovery), user_id),
        )
    )
    return Enrolled(user_id, email, secret, recovery)


def session_for(ctx: Context, user_id: int, stage: str = ACTIVE) -> str:
    """A session token in a stage, created now."""
    return ctx.db.run(lambda tx: sessions.new_session(tx, user_id, stage, ctx.clock()))


def add_passkey(ctx: Context, token: str, key: SoftAuthenticator, **options: Any) -> str:
    """Register a passkey through the passkeys module; its credential id."""
    created = passkeys.register_options(ctx, token, options.get("name"), None, None, IP)
    return passkeys.register_verify(ctx, token, key.create(created), IP)[1].id
