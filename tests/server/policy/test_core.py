"""``policy.core``'s unit of work and outbox: a mail queued in a unit of work is written once it has
committed, never when it rolls back, and once however often the transaction function runs (a PostgreSQL
serialization retry: forced for every mailing caller on both backends, and a real one on PostgreSQL)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from keyctl.server.policy import admin, password_reset, protection, risk
from keyctl.server.policy.core import Context, PolicyError, Settings
from keyctl.server.storage import Database, Tx, open_database
from tests.postgres import Cluster
from tests.server.conftest import FakeClock
from tests.server.policy.conftest import (
    ALERTS,
    EMAIL,
    IP,
    add_user,
    outbox,
    refusal,
    rows,
)

T = TypeVar("T")


class Conflict(Exception):
    pass


class RunTwice:
    """The database, with every unit of work run twice: the first run rolled back at its end, as a
    serialization conflict at commit rolls it back before the adapter runs it again."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.dialect = db.dialect
        self.description = db.description

    def run(self, work: Callable[[Tx], T], *, exclusive: bool = False) -> T:
        def first(tx: Tx) -> T:
            work(tx)
            raise Conflict

        with contextlib.suppress(Conflict):
            self.db.run(first, exclusive=exclusive)
        return self.db.run(work, exclusive=exclusive)

    def close(self) -> None:
        self.db.close()


def test_a_mail_is_written_when_its_unit_of_work_commits_and_never_when_it_rolls_back(ctx: Context) -> None:
    seen_inside: list[int] = []

    def work(tx: Tx, now: float) -> None:
        ctx.mail("a@example.com", "Subject", "http://x/1", now)
        seen_inside.append(len(outbox(ctx)))

    ctx.run(work)
    assert seen_inside == [0]
    assert [m["link"] for m in outbox(ctx)] == ["http://x/1"]

    def refused(tx: Tx, now: float) -> None:
        ctx.mail("a@example.com", "Subject", "http://x/2", now)
        raise PolicyError("invalid_request", "no")

    refusal(lambda: ctx.run(refused))
    assert [m["link"] for m in outbox(ctx)] == ["http://x/1"]


def test_a_mail_outside_a_unit_of_work_is_a_programming_error(ctx: Context, clock: FakeClock) -> None:
    with pytest.raises(RuntimeError, match=r"Context\.run"):
        ctx.mail("a@example.com", "Subject", "http://x/1", clock())
    with pytest.raises(RuntimeError, match=r"Context\.run"):
        ctx.db.run(lambda tx: ctx.mail("a@example.com", "Subject", "http://x/1", clock()))


def _failed_attempt(ctx: Context) -> Callable[[Tx, float], None]:
    def work(tx: Tx, now: float) -> None:
        raise protection.failure(ctx, EMAIL, IP, "invalid_credentials", "no", "signin_failed")

    return work


def test_every_mailing_caller_writes_each_line_once_when_its_transaction_runs_twice(
    ctx: Context, clock: FakeClock
) -> None:
    twice = Context(RunTwice(ctx.db), ctx.settings, clock)
    add_user(ctx)
    admin.invite(twice, "new@example.com")
    password_reset.request_reset(twice, EMAIL, IP)
    password_reset.admin_reset_link(twice, EMAIL)
    for _ in range(5):
        refusal(lambda: twice.run(_failed_attempt(twice)))
    ctx.db.run(lambda tx: risk.record_location(tx, 1, "192.0.2.1", clock()))
    user = rows(ctx, "SELECT * FROM users")[0]
    refusal(lambda: twice.run(lambda tx, now: risk.assess(twice, tx, user, "198.51.100.1", "ua", now)))
    subjects = [m["subject"] for m in outbox(ctx)]
    assert subjects == [
        "You are invited: choose a password",
        "Reset your password",
        "Reset your password",
        "Sign-in blocked after failed attempts",
        *[f"Risky sign-in blocked: {EMAIL} from 198.51.100.1"] * len(ALERTS),
    ]
    assert len(rows(ctx, "SELECT * FROM password_resets")) == 2  # the first runs left nothing either
    assert len(rows(ctx, "SELECT * FROM invites")) == 1


@pytest.fixture
def pg_ctx(pg_cluster: Cluster, clock: FakeClock, tmp_path: Path) -> Iterator[tuple[Context, str]]:
    url = pg_cluster.database()
    db = open_database(url, now=clock())
    try:
        settings = Settings(
            rp_id="localhost", origin="http://localhost", outbox=tmp_path / "mail", admin_token="t"
        )
        yield Context(db, settings, clock), url
    finally:
        db.close()


def test_a_real_serialization_failure_runs_the_reset_again_and_its_mail_is_written_once(
    pg_ctx: tuple[Context, str],
) -> None:
    """Write skew: the reset's transaction has read the account and queued the mail; another transaction
    reads the reset links and changes the account, and commits first; PostgreSQL aborts the reset at its
    commit (SERIALIZABLE) and the adapter runs it again."""
    ctx, url = pg_ctx
    user = add_user(ctx)
    audit = ctx.audit
    attempts: list[int] = []

    def audit_with_a_concurrent_commit(tx: Tx, event: str, *args: Any, **detail: Any) -> None:
        attempts.append(len(outbox(ctx)))
        if len(attempts) == 1:  # first run, its mail queued: the other transaction commits now
            with psycopg.connect(url) as other:
                other.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                other.execute("SELECT count(*) FROM password_resets").fetchone()
                other.execute("UPDATE users SET last_sign_in_at = 1 WHERE id = %s", (user,))
        audit(tx, event, *args, **detail)

    ctx.audit = audit_with_a_concurrent_commit  # type: ignore[method-assign,assignment]
    password_reset.request_reset(ctx, EMAIL, IP)
    assert attempts == [0, 0]  # run twice, nothing written to the outbox before the commit
    assert len(outbox(ctx)) == 1
    assert len(rows(ctx, "SELECT * FROM password_resets")) == 1
