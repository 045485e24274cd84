"""``policy.accounts``: creating an account, the password step (the same refusal for an unknown email
and a wrong password, counted; the stage it leads to; a breached password; a password changed during the
slow hash), and the two password changes (after a breached password, and a signed-in user's own)."""

from __future__ import annotations

import pytest

from keyctl.server import passwords
from keyctl.server.policy import accounts
from keyctl.server.policy.core import ACTIVE, ENROLL, PASSWORD_CHANGE, STEP_UP_TTL, TOTP, Context, token_hash
from tests.server.conftest import FakeClock
from tests.server.policy.conftest import (
    EMAIL,
    IP,
    PASSWORD,
    add_enrolled,
    add_user,
    events,
    names,
    refusal,
    rows,
    session_for,
    state,
)

BREACHED = "password1234"  # "password" with digits around it
NEW_PASSWORD = "a new and much longer passphrase"


def _stage(ctx: Context, token: str) -> str:
    return str(rows(ctx, "SELECT stage FROM sessions WHERE token_hash = ?", (token_hash(token),))[0]["stage"])


def test_an_account_is_created_with_a_normalized_email_a_hash_and_a_random_handle(ctx: Context) -> None:
    user = accounts.create_user(ctx, "  Alice@Example.COM ", PASSWORD, IP)
    assert (user.email, user.totp_enrolled, user.passkeys) == (EMAIL, False, ())
    other = accounts.create_user(ctx, "bob@example.com", PASSWORD)
    stored = rows(ctx, "SELECT * FROM users ORDER BY id")
    assert [r["email"] for r in stored] == [EMAIL, other.email]
    assert all(passwords.verify_password(PASSWORD, r["password_hash"]) for r in stored)
    assert PASSWORD not in repr(stored)
    handles = [bytes(r["user_handle"]) for r in stored]
    assert [len(h) for h in handles] == [32, 32]
    assert handles[0] != handles[1]
    assert events(ctx) == [("user_created", EMAIL, IP, {}), ("user_created", "bob@example.com", None, {})]


def test_a_weak_password_or_an_existing_account_creates_nothing(ctx: Context) -> None:
    add_user(ctx)
    before = state(ctx)
    assert refusal(lambda: accounts.create_user(ctx, "new@example.com", "short")).code == "weak_password"
    assert refusal(lambda: accounts.create_user(ctx, "new@example.com", BREACHED)).code == "weak_password"
    assert refusal(lambda: accounts.create_user(ctx, "ALICE@example.com", PASSWORD)).code == "user_exists"
    assert refusal(lambda: accounts.create_user(ctx, "no-at-sign", PASSWORD)).code == "invalid_request"
    assert state(ctx) == before
    assert events(ctx) == []


def test_the_password_step_leads_to_enrollment_or_to_the_code(ctx: Context) -> None:
    add_user(ctx, "new@example.com")
    add_enrolled(ctx)
    first = accounts.signin_password(ctx, "New@Example.com", PASSWORD, IP)
    later = accounts.signin_password(ctx, EMAIL, PASSWORD, IP)
    assert (first.status, _stage(ctx, first.token)) == ("totp_enrollment_required", ENROLL)
    assert (later.status, _stage(ctx, later.token)) == ("totp_required", TOTP)
    assert names(ctx) == ["signin_password_ok", "signin_password_ok"]


def test_a_wrong_password_and_an_unknown_email_get_the_same_refusal_and_are_counted(ctx: Context) -> None:
    add_user(ctx)
    wrong = refusal(lambda: accounts.signin_password(ctx, EMAIL, "not the password at all", IP))
    unknown = refusal(lambda: accounts.signin_password(ctx, "nobody@example.com", PASSWORD, IP))
    assert (
        (wrong.code, wrong.message)
        == (unknown.code, unknown.message)
        == (
            "invalid_credentials",
            "Incorrect email or password",
        )
    )
    assert rows(ctx, "SELECT * FROM sessions") == []
    counted = rows(ctx, "SELECT ip, email, count FROM failures ORDER BY email")
    assert counted == [
        {"ip": IP, "email": EMAIL, "count": 1},
        {"ip": IP, "email": "nobody@example.com", "count": 1},
    ]
    assert names(ctx) == ["signin_failed", "signin_failed"]


def test_a_breached_password_leads_to_the_password_change_stage(ctx: Context) -> None:
    add_user(ctx, password=BREACHED)
    step = accounts.signin_password(ctx, EMAIL, BREACHED, IP)
    assert (step.status, _stage(ctx, step.token)) == ("password_change_required", PASSWORD_CHANGE)
    assert names(ctx) == ["signin_password_breached"]


def test_a_password_changed_during_the_slow_hash_refuses_the_old_one(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_user(ctx)
    verify = passwords.verify_password

    def changed_meanwhile(password: str, hashed: str) -> bool:
        ctx.db.run(
            lambda tx: tx.execute(
                "UPDATE users SET password_hash = ? WHERE email = ?",
                (passwords.hash_password(NEW_PASSWORD), EMAIL),
            )
        )
        return verify(password, hashed)

    monkeypatch.setattr(passwords, "verify_password", changed_meanwhile)
    assert refusal(lambda: accounts.signin_password(ctx, EMAIL, PASSWORD, IP)).code == "invalid_credentials"
    assert rows(ctx, "SELECT * FROM sessions") == []


def test_the_breached_password_change_ends_every_session_and_moves_to_the_second_factor(
    ctx: Context,
) -> None:
    user = add_enrolled(ctx).id
    elsewhere = session_for(ctx, user)
    token = session_for(ctx, user, PASSWORD_CHANGE)
    assert (
        refusal(lambda: accounts.change_password(ctx, elsewhere, NEW_PASSWORD, IP)).code == "invalid_request"
    )
    assert refusal(lambda: accounts.change_password(ctx, token, BREACHED, IP)).code == "weak_password"
    step = accounts.change_password(ctx, token, NEW_PASSWORD, IP)
    assert step.status == "totp_required"
    assert [r["token_hash"] for r in rows(ctx, "SELECT token_hash FROM sessions")] == [token_hash(step.token)]
    [stored] = rows(ctx, "SELECT password_hash FROM users")
    assert passwords.verify_password(NEW_PASSWORD, stored["password_hash"])
    assert events(ctx) == [("password_changed", EMAIL, IP, {"reason": "breached"})]


def test_the_own_password_change_needs_a_fresh_verification_and_keeps_this_session_only(
    ctx: Context, clock: FakeClock
) -> None:
    user = add_enrolled(ctx).id
    token, other = session_for(ctx, user), session_for(ctx, user)
    ctx.db.run(
        lambda tx: tx.execute(
            "INSERT INTO password_resets (token_hash, user_id, created_at) VALUES (?, ?, ?)",
            ("h", user, clock()),
        )
    )
    clock.advance(STEP_UP_TTL)
    before = state(ctx)
    assert (
        refusal(lambda: accounts.change_own_password(ctx, token, NEW_PASSWORD, IP)).code == "step_up_required"
    )
    assert state(ctx) == before
    ctx.db.run(lambda tx: tx.execute("UPDATE sessions SET verified_at = ?", (clock(),)))
    accounts.change_own_password(ctx, token, NEW_PASSWORD, IP)
    assert [r["token_hash"] for r in rows(ctx, "SELECT token_hash FROM sessions")] == [token_hash(token)]
    assert other != token
    assert rows(ctx, "SELECT * FROM password_resets") == []
    [stored] = rows(ctx, "SELECT password_hash FROM users")
    assert passwords.verify_password(NEW_PASSWORD, stored["password_hash"])
    assert names(ctx) == ["step_up_required", "password_changed"]
    assert events(ctx)[-1] == ("password_changed", EMAIL, IP, {"reason": "user"})
    assert _stage(ctx, token) == ACTIVE
