"""``policy.two_factor``: TOTP enrollment (one pending secret per sign-in, the first code, the recovery
code confirmed before anything is stored on the account), the TOTP step (each time step once, the
neighbouring steps accepted, wrong codes counted), the recovery-code step (the code replaced), and what
completing a sign-in writes. Codes come from oathtool."""

from __future__ import annotations

from keyctl.server import twofactor
from keyctl.server.policy import two_factor
from keyctl.server.policy.core import ACTIVE, ENROLL, RECOVERY_CONFIRM, TOTP, Context, token_hash
from tests.server.conftest import FakeClock, totp_code
from tests.server.policy.conftest import (
    EMAIL,
    IP,
    add_enrolled,
    add_user,
    events,
    names,
    refusal,
    rows,
    session_for,
    state,
)

STEP = 30


def _sessions(ctx: Context) -> list[tuple[str, str]]:
    return [(r["token_hash"], r["stage"]) for r in rows(ctx, "SELECT token_hash, stage FROM sessions")]


def test_enrollment_keeps_one_pending_secret_per_sign_in_and_stores_nothing_on_the_account(
    ctx: Context,
) -> None:
    user = add_user(ctx)
    token = session_for(ctx, user, ENROLL)
    first = two_factor.totp_enroll(ctx, token)
    again = two_factor.totp_enroll(ctx, token)
    assert first.secret == again.secret
    assert first.otpauth_uri.startswith("otpauth://totp/")
    assert first.secret in first.otpauth_uri
    assert first.qr_svg.lstrip().startswith("<")
    assert rows(ctx, "SELECT pending_secret FROM sessions") == [{"pending_secret": first.secret}]
    assert rows(ctx, "SELECT totp_secret FROM users") == [{"totp_secret": None}]
    other = session_for(ctx, user, ENROLL)
    assert two_factor.totp_enroll(ctx, other).secret != first.secret


def test_the_first_code_leads_to_the_recovery_code_and_a_wrong_one_is_counted(
    ctx: Context, clock: FakeClock
) -> None:
    token = session_for(ctx, add_user(ctx), ENROLL)
    assert refusal(lambda: two_factor.totp_enroll_verify(ctx, token, "123456", IP)).code == "invalid_request"
    secret = two_factor.totp_enroll(ctx, token).secret
    assert refusal(lambda: two_factor.totp_enroll_verify(ctx, token, "12345a", IP)).code == "invalid_code"
    assert rows(ctx, "SELECT count FROM failures") == [{"count": 1}]
    recovery = two_factor.totp_enroll_verify(ctx, token, totp_code(secret, clock()), IP)
    [session] = rows(ctx, "SELECT * FROM sessions")
    assert session["stage"] == RECOVERY_CONFIRM
    assert session["pending_recovery_hash"] == twofactor.recovery_hash(recovery)
    assert session["pending_step"] == int(clock() // STEP)
    assert rows(ctx, "SELECT totp_secret, recovery_hash FROM users") == [
        {"totp_secret": None, "recovery_hash": None}
    ]


def test_confirming_the_recovery_code_stores_the_second_factor_and_signs_in(
    ctx: Context, clock: FakeClock
) -> None:
    token = session_for(ctx, add_user(ctx), ENROLL)
    secret = two_factor.totp_enroll(ctx, token).secret
    code = totp_code(secret, clock())
    recovery = two_factor.totp_enroll_verify(ctx, token, code, IP)
    before = state(ctx)
    assert (
        refusal(lambda: two_factor.recovery_confirm(ctx, token, "AAAA-AAAA-AAAA-AAAA", IP)).code
        == "invalid_code"
    )
    assert state(ctx) == before  # a mistyped recovery code is not a failed attempt
    signed_in = two_factor.recovery_confirm(ctx, token, recovery.lower().replace("-", " "), IP)
    [user] = rows(ctx, "SELECT * FROM users")
    assert (user["totp_secret"], user["recovery_hash"]) == (secret, twofactor.recovery_hash(recovery))
    assert user["totp_last_step"] == int(clock() // STEP)  # the enrollment code cannot be replayed
    assert _sessions(ctx) == [(token_hash(signed_in.token), ACTIVE)]
    assert (signed_in.method, signed_in.passkey_prompt) == ("totp", True)
    assert names(ctx) == ["totp_enrolled", "signin_ok"]


def test_an_enrollment_is_refused_once_another_sign_in_finished_enrolling(ctx: Context) -> None:
    user = add_user(ctx)
    token = session_for(ctx, user, ENROLL)
    ctx.db.run(
        lambda tx: tx.execute("UPDATE users SET totp_secret = 'JBSWY3DPEHPK3PXP' WHERE id = ?", (user,))
    )
    assert refusal(lambda: two_factor.totp_enroll(ctx, token)).code == "session_expired"


def test_each_totp_step_works_once_and_the_neighbouring_steps_are_accepted(
    ctx: Context, clock: FakeClock
) -> None:
    account = add_enrolled(ctx)
    first = session_for(ctx, account.id, TOTP)
    two_factor.signin_totp(ctx, first, totp_code(account.secret, clock() - STEP), IP)
    second = session_for(ctx, account.id, TOTP)
    replay = refusal(
        lambda: two_factor.signin_totp(ctx, second, totp_code(account.secret, clock() - STEP), IP)
    )
    assert (replay.code, replay.message) == (
        "invalid_code",
        "That code was already used: wait for the next one",
    )
    two_factor.signin_totp(ctx, second, totp_code(account.secret, clock() + STEP), IP)
    assert rows(ctx, "SELECT totp_last_step FROM users") == [{"totp_last_step": int(clock() // STEP) + 1}]
    third = session_for(ctx, account.id, TOTP)
    far = refusal(
        lambda: two_factor.signin_totp(ctx, third, totp_code(account.secret, clock() + 2 * STEP), IP)
    )
    assert far.message == "Incorrect code"
    assert names(ctx) == ["signin_ok", "signin_failed", "signin_ok", "signin_failed"]


def test_completing_a_sign_in_replaces_the_session_clears_failures_and_records_the_place(
    ctx: Context, clock: FakeClock
) -> None:
    account = add_enrolled(ctx)
    ctx.db.run(
        lambda tx: tx.execute(
            "INSERT INTO failures (ip, email, count) VALUES (?, ?, 3), ('198.51.100.1', ?, 2)",
            (IP, EMAIL, EMAIL),
        )
    )
    token = session_for(ctx, account.id, TOTP)
    clock.advance(10)
    signed_in = two_factor.signin_totp(ctx, token, totp_code(account.secret, clock()), IP)
    assert _sessions(ctx) == [(token_hash(signed_in.token), ACTIVE)]
    assert rows(ctx, "SELECT ip FROM failures") == [{"ip": "198.51.100.1"}]  # other addresses' count stays
    [user] = rows(ctx, "SELECT last_sign_in_at, signins_since_skip FROM users")
    assert user == {"last_sign_in_at": clock(), "signins_since_skip": 1}
    assert rows(ctx, "SELECT ip, first_at, last_at FROM signin_locations") == [
        {"ip": IP, "first_at": clock(), "last_at": clock()}
    ]
    assert (signed_in.expiry.idle_expires_at, signed_in.email) == (clock() + 24 * 3600, EMAIL)
    assert events(ctx)[-1] == ("signin_ok", EMAIL, IP, {"method": "totp"})


def test_a_recovery_code_signs_in_once_and_is_replaced(ctx: Context) -> None:
    account = add_enrolled(ctx)
    token = session_for(ctx, account.id, TOTP)
    signed_in = two_factor.signin_recovery(ctx, token, account.recovery_code, IP)
    assert signed_in.method == "recovery"
    assert signed_in.new_recovery_code not in (None, account.recovery_code)
    assert rows(ctx, "SELECT recovery_hash FROM users") == [
        {"recovery_hash": twofactor.recovery_hash(str(signed_in.new_recovery_code))}
    ]
    again = session_for(ctx, account.id, TOTP)
    assert (
        refusal(lambda: two_factor.signin_recovery(ctx, again, account.recovery_code, IP)).code
        == "invalid_code"
    )
    assert rows(ctx, "SELECT count FROM failures") == [{"count": 1}]
    assert names(ctx) == ["recovery_code_used", "signin_ok", "signin_failed"]


def test_a_second_factor_reset_since_the_password_step_ends_that_sign_in(
    ctx: Context, clock: FakeClock
) -> None:
    account = add_enrolled(ctx)
    token = session_for(ctx, account.id, TOTP)
    ctx.db.run(lambda tx: tx.execute("UPDATE users SET totp_secret = NULL, recovery_hash = NULL"))
    error = refusal(lambda: two_factor.signin_totp(ctx, token, totp_code(account.secret, clock()), IP))
    assert error.code == "session_expired"
    assert events(ctx) == []
