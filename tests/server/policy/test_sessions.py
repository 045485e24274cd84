"""``policy.sessions``: tokens stored hashed, the stage a request needs, idle / absolute / pending expiry
at their exact edges, the sliding idle time, step-up freshness, sign-out and the start-up cleanup."""

from __future__ import annotations

import functools
import hashlib

import pytest

from keyctl.server.policy import sessions
from keyctl.server.policy.core import (
    ABSOLUTE_TTL,
    ACTIVE,
    ENROLL,
    IDLE_TTL,
    PASSKEY_ENROLLMENT,
    PASSWORD_CHANGE,
    PENDING_TTL,
    RECOVERY_CONFIRM,
    STEP_UP_TTL,
    TOTP,
    Context,
)
from keyctl.server.storage import Row
from tests.server.conftest import FakeClock
from tests.server.policy.conftest import IP, add_user, events, refusal, rows, session_for, state


def _session(ctx: Context, token: str | None, stage: str = ACTIVE, enrollment: bool = False) -> Row:
    return ctx.db.run(lambda tx: sessions.session(tx, token, stage, ctx.clock(), enrollment))


def test_a_new_session_stores_only_the_token_hash_and_counts_as_a_verification(
    ctx: Context, clock: FakeClock
) -> None:
    user = add_user(ctx)
    token = session_for(ctx, user, TOTP)
    [row] = rows(ctx, "SELECT * FROM sessions")
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(row)
    assert (row["user_id"], row["stage"]) == (user, TOTP)
    assert row["created_at"] == row["last_seen_at"] == row["verified_at"] == clock()


def test_an_unknown_or_missing_token_is_not_signed_in(ctx: Context) -> None:
    session_for(ctx, add_user(ctx))
    for token in (None, "", "not-a-token"):
        assert refusal(functools.partial(_session, ctx, token)).code == "not_signed_in"


def test_an_active_session_expires_after_the_idle_time_and_each_use_slides_it(
    ctx: Context, clock: FakeClock
) -> None:
    token = session_for(ctx, add_user(ctx))
    clock.advance(IDLE_TTL)
    _session(ctx, token)  # exactly the idle time: still valid, and seen now
    assert rows(ctx, "SELECT last_seen_at FROM sessions") == [{"last_seen_at": clock()}]
    clock.advance(IDLE_TTL)
    _session(ctx, token)
    clock.advance(IDLE_TTL + 1)
    assert refusal(lambda: _session(ctx, token)).code == "session_expired"


def test_an_active_session_ends_at_the_absolute_limit_however_often_it_is_used(
    ctx: Context, clock: FakeClock
) -> None:
    token = session_for(ctx, add_user(ctx))
    while clock() + IDLE_TTL / 2 < session_start(ctx) + ABSOLUTE_TTL:
        clock.advance(IDLE_TTL / 2)
        _session(ctx, token)
    clock.now = session_start(ctx) + ABSOLUTE_TTL
    _session(ctx, token)
    clock.advance(1)
    assert refusal(lambda: _session(ctx, token)).code == "session_expired"


def session_start(ctx: Context) -> float:
    return float(rows(ctx, "SELECT created_at FROM sessions")[0]["created_at"])


def test_a_sign_in_in_progress_expires_after_the_pending_time_and_is_not_slid(
    ctx: Context, clock: FakeClock
) -> None:
    token = session_for(ctx, add_user(ctx), TOTP)
    clock.advance(PENDING_TTL)
    _session(ctx, token, TOTP)
    assert rows(ctx, "SELECT last_seen_at FROM sessions") == [{"last_seen_at": clock() - PENDING_TTL}]
    clock.advance(1)
    assert refusal(lambda: _session(ctx, token, TOTP)).code == "session_expired"


@pytest.mark.parametrize(
    ("stage", "code"),
    [
        (TOTP, "totp_required"),
        (PASSWORD_CHANGE, "password_change_required"),
        (ENROLL, "totp_enrollment_required"),
        (RECOVERY_CONFIRM, "totp_enrollment_required"),
        (PASSKEY_ENROLLMENT, "not_signed_in"),
    ],
)
def test_a_session_in_another_stage_is_refused_with_what_it_must_do_first(
    ctx: Context, stage: str, code: str
) -> None:
    token = session_for(ctx, add_user(ctx), stage)
    assert refusal(lambda: _session(ctx, token, ACTIVE)).code == code


def test_a_signed_in_session_is_refused_where_a_sign_in_step_is_expected(ctx: Context) -> None:
    token = session_for(ctx, add_user(ctx))
    error = refusal(lambda: _session(ctx, token, TOTP))
    assert (error.code, error.message) == ("invalid_request", "already signed in")


def test_an_enrollment_session_is_accepted_only_where_enrollment_is_allowed(ctx: Context) -> None:
    token = session_for(ctx, add_user(ctx), PASSKEY_ENROLLMENT)
    assert _session(ctx, token, ACTIVE, enrollment=True)["stage"] == PASSKEY_ENROLLMENT
    assert refusal(lambda: _session(ctx, token, ACTIVE)).code == "not_signed_in"


def test_step_up_is_fresh_until_the_step_up_time_and_its_refusal_is_audited(
    ctx: Context, clock: FakeClock
) -> None:
    token = session_for(ctx, add_user(ctx))

    def act() -> None:
        ctx.run(
            lambda tx, now: sessions.require_step_up(
                ctx, sessions.session(tx, token, ACTIVE, now), "rename_passkey", IP, now
            )
        )

    clock.advance(STEP_UP_TTL - 1)
    act()
    assert events(ctx) == []
    clock.advance(1)
    error = refusal(act)
    assert error.code == "step_up_required"
    assert events(ctx) == [
        (
            "step_up_required",
            "alice@example.com",
            IP,
            {"action": "rename_passkey", "reason": "step_up_required"},
        )
    ]
    # The refusal rolled the unit of work back: the session still shows the allowed use, a second ago.
    assert rows(ctx, "SELECT last_seen_at FROM sessions") == [{"last_seen_at": clock() - 1}]


def test_an_enrollment_session_is_never_asked_to_step_up(ctx: Context, clock: FakeClock) -> None:
    token = session_for(ctx, add_user(ctx), PASSKEY_ENROLLMENT)
    clock.advance(PENDING_TTL)
    ctx.run(
        lambda tx, now: sessions.require_step_up(
            ctx, sessions.session(tx, token, ACTIVE, now, enrollment=True), "add_passkey", IP, now
        )
    )


def test_signout_deletes_only_that_session_and_is_audited_once(ctx: Context) -> None:
    user = add_user(ctx)
    token, other = session_for(ctx, user), session_for(ctx, user)
    sessions.signout(ctx, token, IP)
    assert refusal(lambda: _session(ctx, token)).code == "not_signed_in"
    _session(ctx, other)
    before = state(ctx)
    assert refusal(lambda: sessions.signout(ctx, token, IP)).code == "not_signed_in"
    assert refusal(lambda: sessions.signout(ctx, None, IP)).code == "not_signed_in"
    assert state(ctx) == before
    assert events(ctx) == [("signout", "alice@example.com", IP, {})]


def test_cleanup_forgets_sessions_older_than_the_absolute_limit_only(ctx: Context, clock: FakeClock) -> None:
    user = add_user(ctx)
    session_for(ctx, user)
    clock.advance(1)
    kept = session_for(ctx, user, TOTP)
    clock.advance(ABSOLUTE_TTL)
    sessions.cleanup(ctx)
    assert [r["token_hash"] for r in rows(ctx, "SELECT token_hash FROM sessions")] == [
        hashlib.sha256(kept.encode()).hexdigest()
    ]
