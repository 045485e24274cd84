"""``policy.password_reset``: a reset link for a known account only (the same outcome for an unknown one,
bar the audit's ``known``), stored hashed, mailed, valid 24 hours, single use; the reset applies the
password rules, ends every session and link of the account and keeps its second factor."""

from __future__ import annotations

import functools

from keyctl.server import passwords
from keyctl.server.policy import password_reset
from keyctl.server.policy.core import RESET_TTL, Context, token_hash
from tests.server.conftest import FakeClock
from tests.server.policy.conftest import (
    EMAIL,
    IP,
    ORIGIN,
    add_enrolled,
    events,
    outbox,
    refusal,
    rows,
    session_for,
    state,
)

NEW_PASSWORD = "a new and much longer passphrase"


def _token(mail: dict[str, str]) -> str:
    assert mail["link"].startswith(f"{ORIGIN}/reset/")
    return mail["link"].rsplit("/", 1)[1]


def test_a_request_mails_a_link_for_a_known_account_and_says_nothing_for_an_unknown_one(
    ctx: Context, clock: FakeClock
) -> None:
    account = add_enrolled(ctx)
    password_reset.request_reset(ctx, "nobody@example.com", IP)
    assert outbox(ctx) == []
    assert rows(ctx, "SELECT * FROM password_resets") == []
    password_reset.request_reset(ctx, " Alice@example.com", IP)
    [mail] = outbox(ctx)
    assert (mail["to"], mail["subject"]) == (EMAIL, password_reset.RESET_SUBJECT)
    assert rows(ctx, "SELECT * FROM password_resets") == [
        {"token_hash": token_hash(_token(mail)), "user_id": account.id, "created_at": clock()}
    ]
    assert [(e, d) for e, _, _, d in events(ctx)] == [
        ("password_reset_requested", {"known": False}),
        ("password_reset_requested", {"known": True}),
    ]


def test_a_reset_sets_the_password_ends_sessions_and_links_and_keeps_the_second_factor(ctx: Context) -> None:
    account = add_enrolled(ctx)
    session_for(ctx, account.id)
    password_reset.request_reset(ctx, EMAIL, IP)
    password_reset.request_reset(ctx, EMAIL, IP)
    first, second = (_token(m) for m in outbox(ctx))
    assert password_reset.reset_password(ctx, first, NEW_PASSWORD, IP) == EMAIL
    [user] = rows(ctx, "SELECT * FROM users")
    assert passwords.verify_password(NEW_PASSWORD, user["password_hash"])
    assert user["totp_secret"] == account.secret
    assert rows(ctx, "SELECT * FROM sessions") == rows(ctx, "SELECT * FROM password_resets") == []
    for used in (first, second):
        assert (
            refusal(functools.partial(password_reset.reset_password, ctx, used, NEW_PASSWORD, IP)).code
            == "not_found"
        )
    assert events(ctx)[-1] == ("password_changed", EMAIL, IP, {"reason": "reset"})


def test_a_link_works_for_24_hours_exactly(ctx: Context, clock: FakeClock) -> None:
    add_enrolled(ctx)
    password_reset.request_reset(ctx, EMAIL, IP)
    password_reset.request_reset(ctx, EMAIL, IP)
    late, on_time = (_token(m) for m in outbox(ctx))
    clock.advance(RESET_TTL)
    before = state(ctx)
    clock.advance(1)
    assert refusal(lambda: password_reset.reset_password(ctx, late, NEW_PASSWORD, IP)).code == "not_found"
    assert state(ctx) == before
    clock.advance(-1)
    password_reset.reset_password(ctx, on_time, NEW_PASSWORD, IP)


def test_a_weak_password_is_refused_and_the_link_stays_usable(ctx: Context) -> None:
    add_enrolled(ctx)
    password_reset.request_reset(ctx, EMAIL, IP)
    token = _token(outbox(ctx)[0])
    before = state(ctx)
    assert (
        refusal(lambda: password_reset.reset_password(ctx, token, "password1234", IP)).code == "weak_password"
    )
    assert state(ctx) == before
    password_reset.reset_password(ctx, token, NEW_PASSWORD, IP)


def test_an_admin_link_is_returned_and_mailed_and_an_unknown_account_is_not_found(
    ctx: Context, clock: FakeClock
) -> None:
    add_enrolled(ctx)
    assert refusal(lambda: password_reset.admin_reset_link(ctx, "nobody@example.com")).code == "not_found"
    link, expires = password_reset.admin_reset_link(ctx, "ALICE@example.com")
    assert [m["link"] for m in outbox(ctx)] == [link]
    assert expires == clock() + RESET_TTL
    assert events(ctx) == [("password_reset_requested", EMAIL, None, {"by": "admin", "known": True})]
