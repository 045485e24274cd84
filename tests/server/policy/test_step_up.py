"""``policy.step_up``: renewing a session's verification with a TOTP code (each step once, a wrong code
counted like a failed sign-in, none without an authenticator app) or with one of the account's passkeys
(user verification required, the ceremony bound to its session); what it writes is ``verified_at``."""

from __future__ import annotations

from keyctl.server.policy import passkeys, step_up
from keyctl.server.policy.core import STEP_UP_TTL, Context, token_hash
from tests.server.conftest import FakeClock, totp_code
from tests.server.policy.conftest import (
    EMAIL,
    IP,
    ORIGIN,
    add_enrolled,
    add_passkey,
    add_user,
    events,
    refusal,
    rows,
    session_for,
)
from tests.server.softauth import SoftAuthenticator


def _verified_at(ctx: Context, token: str) -> float:
    return float(
        rows(ctx, "SELECT verified_at FROM sessions WHERE token_hash = ?", (token_hash(token),))[0][
            "verified_at"
        ]
    )


def test_a_totp_step_up_renews_the_verification_once_per_code(ctx: Context, clock: FakeClock) -> None:
    account = add_enrolled(ctx)
    token = session_for(ctx, account.id)
    clock.advance(STEP_UP_TTL + 30)
    code = totp_code(account.secret, clock())
    assert step_up.with_totp(ctx, token, code, IP) == clock() + STEP_UP_TTL
    assert _verified_at(ctx, token) == clock()
    assert rows(ctx, "SELECT totp_last_step FROM users") == [{"totp_last_step": int(clock() // 30)}]
    clock.advance(5)
    replay = refusal(lambda: step_up.with_totp(ctx, token, code, IP))
    assert (replay.code, replay.message) == (
        "invalid_code",
        "That code was already used: wait for the next one",
    )
    assert _verified_at(ctx, token) == clock() - 5
    assert events(ctx) == [
        ("step_up", EMAIL, IP, {"method": "totp"}),
        ("step_up_failed", EMAIL, IP, {"reason": "invalid_code"}),
    ]
    assert rows(ctx, "SELECT count FROM failures") == [{"count": 1}]


def test_wrong_step_up_codes_block_like_failed_sign_ins(ctx: Context) -> None:
    account = add_enrolled(ctx)
    token = session_for(ctx, account.id)
    for _ in range(5):
        assert refusal(lambda: step_up.with_totp(ctx, token, "000000", IP)).code == "invalid_code"
    assert refusal(lambda: step_up.with_totp(ctx, token, "000000", IP)).code == "blocked"


def test_without_an_authenticator_app_a_code_cannot_step_up(ctx: Context) -> None:
    token = session_for(ctx, add_user(ctx))
    error = refusal(lambda: step_up.with_totp(ctx, token, "123456", IP))
    assert error.code == "invalid_code"
    assert "use a passkey" in error.message
    assert rows(ctx, "SELECT * FROM failures") == []


def test_a_passkey_step_up_needs_user_verification_and_one_of_the_accounts_passkeys(
    ctx: Context, clock: FakeClock
) -> None:
    user = add_user(ctx)
    token = session_for(ctx, user)
    assert refusal(lambda: step_up.passkey_options(ctx, token)).code == "unknown_credential"
    key = SoftAuthenticator(ORIGIN)
    credential = add_passkey(ctx, token, key)
    clock.advance(STEP_UP_TTL)
    options = step_up.passkey_options(ctx, token)
    assert options["userVerification"] == "required"
    assert [d["id"] for d in options["allowCredentials"]] == [credential]
    [challenge] = rows(ctx, "SELECT kind, user_id, session_hash FROM ceremony_challenges")
    assert challenge == {"kind": "step_up", "user_id": user, "session_hash": token_hash(token)}
    assert step_up.passkey_verify(ctx, token, key.get(options), IP) == clock() + STEP_UP_TTL
    assert _verified_at(ctx, token) == clock()
    assert events(ctx)[-1] == ("step_up", EMAIL, IP, {"method": "passkey"})


def test_a_passkey_step_up_begun_in_another_session_is_refused_and_used_up(ctx: Context) -> None:
    user = add_user(ctx)
    mine, other = session_for(ctx, user), session_for(ctx, user)
    key = SoftAuthenticator(ORIGIN)
    add_passkey(ctx, mine, key)
    response = key.get(step_up.passkey_options(ctx, other))
    assert refusal(lambda: step_up.passkey_verify(ctx, mine, response, IP)).code == "session_expired"
    assert rows(ctx, "SELECT * FROM ceremony_challenges") == []
    assert refusal(lambda: step_up.passkey_verify(ctx, other, response, IP)).code == "session_expired"


def test_a_login_challenge_cannot_serve_as_a_step_up(ctx: Context) -> None:
    token = session_for(ctx, add_user(ctx))
    key = SoftAuthenticator(ORIGIN)
    add_passkey(ctx, token, key)
    response = key.get(passkeys.login_options(ctx, EMAIL, "required"))
    assert refusal(lambda: step_up.passkey_verify(ctx, token, response, IP)).code == "session_expired"
