"""``policy.step_up``: renewing a session's verification with a TOTP code (each step once, a wrong code
counted like a failed sign-in, none without an authenticator app) or with one of the account's passkeys
(user verification required, the ceremony bound to its session); what it writes is ``verified_at``. And a
named admin's step-up: only an ``--admin-email`` account, with its own code (counted when wrong) or
passkey, a hashed token good for 5 minutes while the server lists that admin."""

from __future__ import annotations

from keyctl.server.policy import passkeys, step_up
from keyctl.server.policy.core import STEP_UP_TTL, Context, token_hash
from tests.server.conftest import FakeClock, totp_code
from tests.server.policy.conftest import (
    ALERTS,
    EMAIL,
    IP,
    ORIGIN,
    add_enrolled,
    add_passkey,
    add_user,
    configured,
    events,
    names,
    refusal,
    rows,
    session_for,
    state,
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


def _require(ctx: Context, token: str | None) -> str:
    """The admin the token names, in a unit of work (which records a refusal)."""
    return ctx.run(lambda tx, now: step_up.require_admin(ctx, tx, token, "reset_2fa", EMAIL, IP, now))


def test_an_admins_totp_step_up_gives_a_hashed_token_for_5_minutes(ctx: Context, clock: FakeClock) -> None:
    root = add_enrolled(ctx, ALERTS[0])
    verified = step_up.admin_with_totp(ctx, ALERTS[0].upper(), totp_code(root.secret, clock()), IP)
    assert (verified.email, verified.expires_at) == (ALERTS[0], clock() + STEP_UP_TTL)
    assert rows(ctx, "SELECT token_hash, user_id, method, created_at FROM admin_step_ups") == [
        {
            "token_hash": token_hash(verified.token),
            "user_id": root.id,
            "method": "totp",
            "created_at": clock(),
        }
    ]
    assert events(ctx) == [("admin_step_up", ALERTS[0], IP, {"method": "totp"})]
    clock.advance(STEP_UP_TTL - 1)
    assert _require(ctx, verified.token) == ALERTS[0]
    clock.advance(1)
    before = state(ctx)
    for token in (verified.token, "made-up", None):
        error = refusal(lambda token=token: _require(ctx, token))
        assert (error.code, error.extra) == ("step_up_required", {"step_up": step_up.ADMIN_STEP_UP_NEEDS})
    assert state(ctx) == before
    assert events(ctx)[-1] == (
        "step_up_required",
        EMAIL,
        IP,
        {"action": "reset_2fa", "by": "admin", "reason": "step_up_required"},
    )
    # A new step-up forgets the expired tokens.
    clock.advance(30)
    step_up.admin_with_totp(ctx, ALERTS[0], totp_code(root.secret, clock()), IP)
    assert len(rows(ctx, "SELECT * FROM admin_step_ups")) == 1


def test_only_an_admins_account_steps_up_and_its_wrong_codes_count(ctx: Context, clock: FakeClock) -> None:
    user = add_enrolled(ctx)
    code = totp_code(user.secret, clock())
    not_admin = refusal(lambda: step_up.admin_with_totp(ctx, EMAIL, code, IP))
    assert (not_admin.code, not_admin.message) == (
        "invalid_request",
        f"{EMAIL} is not an admin of this server (keyctl server --admin-email EMAIL)",
    )
    assert refusal(lambda: step_up.admin_with_totp(ctx, ALERTS[1], code, IP)).code == "invalid_request"
    assert refusal(lambda: step_up.admin_passkey_options(ctx, ALERTS[1])).code == "invalid_request"
    assert rows(ctx, "SELECT * FROM failures") == []
    add_enrolled(ctx, ALERTS[0])
    for _ in range(5):
        assert refusal(lambda: step_up.admin_with_totp(ctx, ALERTS[0], "000000", IP)).code == "invalid_code"
    assert rows(ctx, "SELECT email, count FROM failures") == [{"email": ALERTS[0], "count": 5}]
    assert refusal(lambda: step_up.admin_with_totp(ctx, ALERTS[0], "000000", IP)).code == "blocked"
    assert names(ctx).count("admin_step_up_failed") == 5


def test_a_token_names_an_admin_only_while_the_server_lists_them(ctx: Context, clock: FakeClock) -> None:
    root = add_enrolled(ctx, ALERTS[0])
    token = step_up.admin_with_totp(ctx, ALERTS[0], totp_code(root.secret, clock()), IP).token
    assert _require(ctx, token) == ALERTS[0]
    for settings in ({"admin_emails": ALERTS[1:]}, {"admin_emails": ()}):
        other = configured(ctx, **settings)
        error = refusal(lambda other=other: _require(other, token))
        expected = step_up.NO_ADMINS if not settings["admin_emails"] else step_up.ADMIN_STEP_UP_MESSAGE
        assert (error.code, error.message) == ("step_up_required", expected)


def test_an_admins_passkey_step_up(ctx: Context, clock: FakeClock) -> None:
    root = add_user(ctx, ALERTS[0])
    key = SoftAuthenticator(ORIGIN)
    credential = add_passkey(ctx, session_for(ctx, root), key)
    options = step_up.admin_passkey_options(ctx, ALERTS[0])
    assert options["userVerification"] == "required"
    assert [d["id"] for d in options["allowCredentials"]] == [credential]
    [challenge] = rows(ctx, "SELECT kind, user_id, session_hash FROM ceremony_challenges")
    assert challenge == {"kind": "admin_step_up", "user_id": root, "session_hash": None}
    verified = step_up.admin_passkey_verify(ctx, key.get(options), IP)
    assert (verified.email, verified.expires_at) == (ALERTS[0], clock() + STEP_UP_TTL)
    assert _require(ctx, verified.token) == ALERTS[0]
    assert events(ctx)[-1] == ("admin_step_up", ALERTS[0], IP, {"method": "passkey"})
    # A user's session step-up ceremony is no admin step-up.
    user_options = step_up.passkey_options(ctx, session_for(ctx, root))
    error = refusal(lambda: step_up.admin_passkey_verify(ctx, key.get(user_options), IP))
    assert error.code == "session_expired"
