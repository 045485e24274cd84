"""``policy.protection``: the per-IP request rate, failed attempts per address and account (the block at
the limit, its unblock link mailed for known accounts only), suspicious-IP throttling across accounts
(an allowance refilled over a day), and the admin's view and lifting of blocks."""

from __future__ import annotations

from keyctl.server.policy import protection
from keyctl.server.policy.core import IP_REFILL_PERIOD, Context
from tests.server.conftest import FakeClock
from tests.server.policy.conftest import (
    EMAIL,
    IP,
    ORIGIN,
    add_user,
    configured,
    events,
    names,
    outbox,
    refusal,
    rows,
    state,
)

OTHER_IP = "198.51.100.2"


def _fail(ctx: Context, email: str = EMAIL, ip: str = IP) -> None:
    """One failed attempt, as a sign-in step refuses it: the record step runs after the rollback."""

    def work(tx: object, now: float) -> None:
        raise protection.failure(
            ctx, email, ip, "invalid_credentials", "Incorrect email or password", "signin_failed"
        )

    refusal(lambda: ctx.run(work))


def _check(ctx: Context, email: str = EMAIL, ip: str = IP) -> None:
    ctx.run(lambda tx, now: protection.check_not_blocked(ctx, tx, email, ip))


def test_the_request_rate_is_limited_per_address_over_a_sliding_minute(
    ctx: Context, clock: FakeClock
) -> None:
    limited = configured(ctx, rate_limit=3)
    for _ in range(3):
        protection.check_rate(limited, IP)
        clock.advance(10)
    error = refusal(lambda: protection.check_rate(limited, IP))
    assert (error.code, error.retry_after) == ("rate_limited", 30)
    protection.check_rate(limited, OTHER_IP)  # another address has its own count
    assert (
        len(rows(ctx, "SELECT * FROM rate_hits WHERE ip = ?", (IP,))) == 3
    )  # the refused one is not counted
    clock.advance(30)  # the first request leaves the window
    protection.check_rate(limited, IP)


def test_failures_block_the_account_from_that_address_at_the_limit_with_a_mailed_link(
    ctx: Context, clock: FakeClock
) -> None:
    add_user(ctx)
    for _ in range(4):
        _fail(ctx)
    _check(ctx)
    assert outbox(ctx) == []
    _fail(ctx)
    [row] = rows(ctx, "SELECT * FROM failures")
    assert (row["count"], row["blocked_since"]) == (5, clock())
    [mail] = outbox(ctx)
    assert mail["to"] == EMAIL
    assert mail["link"].startswith(f"{ORIGIN}/unblock/")
    assert row["unblock_hash"] not in mail["link"]  # stored hashed
    assert refusal(lambda: _check(ctx)).code == "blocked"
    _check(ctx, ip=OTHER_IP)  # the same account from another address
    assert names(ctx)[-2:] == ["signin_blocked", "signin_refused_blocked"]
    assert events(ctx)[-2] == ("signin_blocked", EMAIL, IP, {"failures": 5})


def test_an_unknown_account_is_blocked_too_but_no_mail_is_sent(ctx: Context) -> None:
    for _ in range(5):
        _fail(ctx, "nobody@example.com")
    assert refusal(lambda: _check(ctx, "nobody@example.com")).code == "blocked"
    assert outbox(ctx) == []


def test_the_unblock_link_lifts_the_block_once(ctx: Context) -> None:
    add_user(ctx)
    for _ in range(5):
        _fail(ctx)
    link = outbox(ctx)[0]["link"].rsplit("/", 1)[1]
    protection.unblock_link(ctx, link)
    _check(ctx)
    assert rows(ctx, "SELECT * FROM failures") == []
    assert refusal(lambda: protection.unblock_link(ctx, link)).code == "not_found"
    assert events(ctx)[-1] == ("unblocked", EMAIL, IP, {"by": "link"})


def test_failures_across_accounts_spend_the_address_allowance_which_refills_over_a_day(
    ctx: Context, clock: FakeClock
) -> None:
    throttled = configured(ctx, ip_max_failures=4)
    for n in range(3):
        _fail(throttled, f"user{n}@example.com")
        _check(throttled, "someone@example.com")
    _fail(throttled, "user3@example.com")
    error = refusal(lambda: _check(throttled, "someone@example.com"))
    assert error.code == "ip_blocked"
    quarter_day = IP_REFILL_PERIOD // 4  # one attempt's worth of a 4-attempt allowance
    assert error.retry_after == quarter_day
    [block] = protection.admin_ip_blocks(throttled)
    assert (block.ip, block.since, block.until) == (IP, clock(), clock() + quarter_day)
    _check(throttled, ip=OTHER_IP)
    clock.advance(quarter_day - 1)
    assert refusal(lambda: _check(throttled)).retry_after == 1
    clock.advance(1)
    _check(throttled)  # refilled enough for one more attempt: the block lapses
    assert rows(ctx, "SELECT blocked_since FROM ip_failures") == [{"blocked_since": None}]
    assert events(ctx)[4] == ("ip_blocked", None, IP, {"failures": 4})
    assert names(ctx).count("signin_refused_ip_blocked") == 2


def test_an_admin_lifts_one_account_block_or_every_block_of_an_address(ctx: Context) -> None:
    throttled = configured(ctx, max_failures=1, ip_max_failures=2)
    _fail(throttled, "a@example.com")
    _fail(throttled, "b@example.com")
    _fail(throttled, "c@example.com", OTHER_IP)
    assert [(b.ip, b.email) for b in protection.admin_blocks(throttled)] == [
        (IP, "a@example.com"),
        (IP, "b@example.com"),
        (OTHER_IP, "c@example.com"),
    ]
    assert protection.admin_unblock(throttled, IP, " A@example.com") == 1
    assert protection.admin_unblock(throttled, IP, "a@example.com") == 0
    assert protection.admin_unblock(throttled, IP, None) == 1
    _check(throttled, "b@example.com")  # the address block went too
    assert [b.email for b in protection.admin_blocks(throttled)] == ["c@example.com"]
    assert names(ctx)[-3:] == ["unblocked", "ip_unblocked", "unblocked"]


def test_a_block_check_writes_nothing_when_it_refuses(ctx: Context) -> None:
    for _ in range(5):
        _fail(ctx)
    before = state(ctx)
    assert refusal(lambda: _check(ctx)).code == "blocked"
    assert state(ctx) == before
