"""``policy.risk``: a right password from a new address is refused when the account had 3 failed sign-ins,
or the address tried 5 accounts, within the last hour; the refusal writes only its audit event and one
alert per admin address; known addresses (and accounts with none yet) are not assessed; completed
sign-ins record their address; the admin list covers 7 days."""

from __future__ import annotations

from typing import Any

from keyctl.server.policy import risk
from keyctl.server.policy.core import Context
from tests.server.conftest import FakeClock
from tests.server.policy.conftest import ALERTS, EMAIL, IP, add_user, events, outbox, refusal, rows, state

HOME = "192.0.2.10"


def _assess(ctx: Context, ip: str = IP, user_agent: str = "curl/8") -> None:
    def work(tx: Any, now: float) -> None:
        user = tx.one("SELECT * FROM users WHERE email = ?", (EMAIL,))
        risk.assess(ctx, tx, user, ip, user_agent, now)

    ctx.run(work)


def _audit(ctx: Context, event: str, email: str, ip: str, at: float) -> None:
    ctx.db.run(
        lambda tx: tx.execute(
            "INSERT INTO audit (time, event, email, ip, detail) VALUES (?, ?, ?, ?, '{}')",
            (at, event, email, ip),
        )
    )


def _known(ctx: Context, ip: str = HOME) -> int:
    user = add_user(ctx)
    ctx.db.run(lambda tx: risk.record_location(tx, user, ip, ctx.clock()))
    return user


def test_a_completed_sign_in_records_its_address_once_with_first_and_last_times(
    ctx: Context, clock: FakeClock
) -> None:
    user = _known(ctx)
    first = clock()
    clock.advance(50)
    ctx.db.run(lambda tx: risk.record_location(tx, user, HOME, clock()))
    assert rows(ctx, "SELECT ip, first_at, last_at FROM signin_locations") == [
        {"ip": HOME, "first_at": first, "last_at": clock()}
    ]


def test_three_failures_of_the_account_within_the_hour_block_a_new_address_and_alert_the_admins(
    ctx: Context, clock: FakeClock
) -> None:
    _known(ctx)
    for _ in range(2):
        _audit(ctx, "signin_failed", EMAIL, "198.51.100.9", clock() - 100)
    _assess(ctx)  # two failures: not risky
    _audit(ctx, "signin_failed", EMAIL, "198.51.100.9", clock() - 100)
    before = state(ctx)
    error = refusal(lambda: _assess(ctx, user_agent="Mozilla/5.0 test"))
    assert error.code == "risk_blocked"
    assert state(ctx) == before
    assert events(ctx)[-1] == (
        "risk_blocked",
        EMAIL,
        IP,
        {"reason": "new_location_after_failures", "user_agent": "Mozilla/5.0 test"},
    )
    assert [(m["to"], m["subject"]) for m in outbox(ctx)] == [
        (admin, f"Risky sign-in blocked: {EMAIL} from {IP}") for admin in ALERTS
    ]
    _assess(ctx, HOME)  # the known address is not assessed
    clock.advance(3600)  # the failures leave the window
    _assess(ctx)


def test_an_address_that_tried_four_other_accounts_is_blocked_for_a_fifth_new_to_it(
    ctx: Context, clock: FakeClock
) -> None:
    _known(ctx)
    for n in range(3):
        _audit(ctx, "signin_failed", f"u{n}@example.com", IP, clock() - 10)
    _audit(ctx, "signin_ok", "u3@example.com", IP, clock() - 10)  # not a password attempt: not counted
    _audit(ctx, "signin_failed", "u4@example.com", IP, clock() - risk.RISK_WINDOW)  # out of the window
    _assess(ctx)  # three others and this one: four
    _audit(ctx, "signin_password_ok", "u5@example.com", IP, clock() - 10)
    assert refusal(lambda: _assess(ctx)).code == "risk_blocked"
    assert events(ctx)[-1][3]["reason"] == "new_location_many_accounts"


def test_an_account_with_no_completed_sign_in_is_not_assessed(ctx: Context, clock: FakeClock) -> None:
    add_user(ctx)
    for _ in range(5):
        _audit(ctx, "signin_failed", EMAIL, IP, clock())
    _assess(ctx)


def test_the_admin_list_shows_the_last_seven_days_newest_first(ctx: Context, clock: FakeClock) -> None:
    _known(ctx)
    for _ in range(3):
        _audit(ctx, "signin_failed", EMAIL, IP, clock())
    refusal(lambda: _assess(ctx, user_agent="first"))
    clock.advance(10)
    refusal(lambda: _assess(ctx, "198.51.100.77", user_agent="second"))
    blocks = risk.admin_risk_blocks(ctx)
    assert [(b.ip, b.user_agent, b.reason, b.time) for b in blocks] == [
        ("198.51.100.77", "second", "new_location_after_failures", clock()),
        (IP, "first", "new_location_after_failures", clock() - 10),
    ]
    clock.advance(7 * 24 * 3600 - 10)
    assert [b.user_agent for b in risk.admin_risk_blocks(ctx)] == ["second"]
