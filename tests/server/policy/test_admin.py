"""``policy.admin``: the bearer token, invites (stored hashed, mailed, 7 days, single use, listed and
revoked by id), the account list's paging, deleting an account with what belongs to it (but not its
failure counts), an admin's passkey rename and removal, enrollment sessions, and the 2FA reset."""

from __future__ import annotations

import functools

from keyctl.server.policy import admin, passkeys, step_up
from keyctl.server.policy.core import (
    ACTIVE,
    INVITE_TTL,
    MAX_PASSKEYS,
    PASSKEY_ENROLLMENT,
    PENDING_TTL,
    TOTP,
    Context,
    token_hash,
)
from tests.server.conftest import FakeClock, totp_code
from tests.server.policy.conftest import (
    ADMIN_TOKEN,
    ALERTS,
    EMAIL,
    IP,
    ORIGIN,
    PASSWORD,
    add_enrolled,
    add_passkey,
    add_user,
    configured,
    events,
    names,
    outbox,
    refusal,
    rows,
    session_for,
    state,
)
from tests.server.softauth import SoftAuthenticator

NEW = "new@example.com"


def _stepped_up(ctx: Context) -> str:
    """A step-up token of the first admin (an --admin-email account with TOTP), for the actions that
    remove an account's protection."""
    root = add_enrolled(ctx, ALERTS[0])
    return step_up.admin_with_totp(ctx, root.email, totp_code(root.secret, ctx.clock()), IP).token


def _token(link: str) -> str:
    assert link.startswith(f"{ORIGIN}/invite/")
    return link.rsplit("/", 1)[1]


def test_only_the_exact_admin_token_passes_and_an_empty_one_passes_nothing(ctx: Context) -> None:
    admin.check_admin(ctx, ADMIN_TOKEN)
    for wrong in (None, "", ADMIN_TOKEN + "x", ADMIN_TOKEN[:-1]):
        assert refusal(functools.partial(admin.check_admin, ctx, wrong)).code == "unauthorized"
    unset = configured(ctx, admin_token="")
    for any_token in ("", "x"):
        assert refusal(functools.partial(admin.check_admin, unset, any_token)).code == "unauthorized"


def test_an_invite_is_stored_hashed_mailed_and_accepted_once(ctx: Context, clock: FakeClock) -> None:
    link, expires = admin.invite(ctx, " New@Example.com")
    assert expires == clock() + INVITE_TTL
    assert [(m["to"], m["link"]) for m in outbox(ctx)] == [(NEW, link)]
    assert rows(ctx, "SELECT * FROM invites") == [
        {"token_hash": token_hash(_token(link)), "email": NEW, "created_at": clock()}
    ]
    second, _ = admin.invite(ctx, NEW)
    user = admin.accept_invite(ctx, _token(link), PASSWORD, IP)
    assert user.email == NEW
    assert rows(ctx, "SELECT * FROM invites") == []  # every invite for that address
    assert refusal(lambda: admin.accept_invite(ctx, _token(second), PASSWORD, IP)).code == "not_found"
    assert refusal(lambda: admin.invite(ctx, NEW)).code == "user_exists"
    assert events(ctx)[-1] == ("user_created", NEW, IP, {"by": "invite"})


def test_an_invite_lasts_seven_days_and_a_weak_password_keeps_it(ctx: Context, clock: FakeClock) -> None:
    link, _ = admin.invite(ctx, NEW)
    clock.advance(INVITE_TTL)
    before = state(ctx)
    assert refusal(lambda: admin.accept_invite(ctx, _token(link), "short", IP)).code == "weak_password"
    assert state(ctx) == before
    admin.accept_invite(ctx, _token(link), PASSWORD, IP)
    late, _ = admin.invite(ctx, "late@example.com")
    clock.advance(INVITE_TTL + 1)
    assert refusal(lambda: admin.accept_invite(ctx, _token(late), PASSWORD, IP)).code == "not_found"


def test_pending_invites_are_listed_oldest_first_and_revoked_by_id(ctx: Context, clock: FakeClock) -> None:
    old, _ = admin.invite(ctx, "old@example.com")
    clock.advance(10)
    admin.invite(ctx, NEW)
    assert [i.email for i in admin.admin_invites(ctx)] == ["old@example.com", NEW]
    clock.advance(INVITE_TTL - 5)
    [pending] = admin.admin_invites(ctx)
    assert (pending.email, pending.expires_at) == (NEW, clock() - INVITE_TTL + 5 + INVITE_TTL)
    assert pending.id == rows(ctx, "SELECT token_hash FROM invites WHERE email = ?", (NEW,))[0]["token_hash"]
    assert admin.admin_revoke_invite(ctx, pending.id).email == NEW
    assert refusal(lambda: admin.admin_revoke_invite(ctx, pending.id)).code == "not_found"
    assert (
        refusal(lambda: admin.admin_revoke_invite(ctx, token_hash(_token(old)))).code == "not_found"
    )  # expired
    assert names(ctx)[-1] == "invite_revoked"


def test_the_account_list_pages_by_id(ctx: Context) -> None:
    for n in range(5):
        add_user(ctx, f"u{n}@example.com")
    page, cursor = admin.admin_users(ctx, 2, 0)
    emails = [u.email for u in page]
    while cursor is not None:
        page, cursor = admin.admin_users(ctx, 2, cursor)
        emails += [u.email for u in page]
    assert emails == [f"u{n}@example.com" for n in range(5)]
    assert admin.admin_users(ctx, 5, 0)[1] is None


def test_deleting_an_account_takes_its_passkeys_sessions_invites_and_challenges_not_its_failures(
    ctx: Context,
) -> None:
    user = add_user(ctx)
    token = session_for(ctx, user)
    add_passkey(ctx, token, SoftAuthenticator(ORIGIN))
    passkeys.register_options(ctx, token, None, None, None, IP)
    ctx.db.run(lambda tx: tx.execute("INSERT INTO invites VALUES ('h', ?, 0)", (EMAIL,)))
    ctx.db.run(lambda tx: tx.execute("INSERT INTO failures (ip, email, count) VALUES (?, ?, 2)", (IP, EMAIL)))
    admin.admin_delete_user(ctx, " ALICE@example.com", _stepped_up(ctx), IP)
    for table in ("passkeys", "invites", "ceremony_challenges"):
        assert rows(ctx, f"SELECT * FROM {table}") == [], table
    assert [r["email"] for r in rows(ctx, "SELECT email FROM users")] == [ALERTS[0]]
    assert rows(ctx, "SELECT * FROM sessions") == []
    assert len(rows(ctx, "SELECT * FROM failures")) == 1
    assert events(ctx)[-1] == ("user_deleted", EMAIL, IP, {"by": ALERTS[0], "passkeys": 1})
    assert refusal(lambda: admin.admin_delete_user(ctx, EMAIL, None, IP)).code == "not_found"


def test_an_admin_renames_and_removes_a_passkey_of_the_named_account_only(ctx: Context) -> None:
    credential = add_passkey(ctx, session_for(ctx, add_user(ctx)), SoftAuthenticator(ORIGIN))
    add_user(ctx, "bob@example.com")
    assert (
        refusal(lambda: admin.admin_rename_passkey(ctx, "bob@example.com", credential, "X")).code
        == "not_found"
    )
    token = _stepped_up(ctx)
    assert (
        refusal(lambda: admin.admin_delete_passkey(ctx, "bob@example.com", credential, token, IP)).code
        == "not_found"
    )
    assert admin.admin_rename_passkey(ctx, EMAIL, credential, "Lab key").name == "Lab key"
    admin.admin_delete_passkey(ctx, EMAIL, credential, token, IP)
    assert rows(ctx, "SELECT * FROM passkeys") == []
    assert [(e, d.get("by")) for e, _, _, d in events(ctx)][-2:] == [
        ("passkey_renamed", "admin"),
        ("passkey_deleted", ALERTS[0]),
    ]


def test_an_enrollment_session_replaces_the_previous_one_and_expires_like_a_pending_sign_in(
    ctx: Context, clock: FakeClock
) -> None:
    add_user(ctx)
    first, email, expires = admin.admin_enrollment(ctx, EMAIL, IP)
    assert (email, expires) == (EMAIL, clock() + PENDING_TTL)
    second, _, _ = admin.admin_enrollment(ctx, EMAIL, IP)
    assert rows(ctx, "SELECT token_hash, stage FROM sessions") == [
        {"token_hash": token_hash(second), "stage": PASSKEY_ENROLLMENT}
    ]
    assert first != second


def test_no_enrollment_session_for_an_account_at_the_passkey_limit(ctx: Context) -> None:
    token = session_for(ctx, add_user(ctx))
    for _ in range(MAX_PASSKEYS):
        add_passkey(ctx, token, SoftAuthenticator(ORIGIN))
    assert refusal(lambda: admin.admin_enrollment(ctx, EMAIL, IP)).code == "passkey_limit"
    assert events(ctx)[-1] == ("enrollment_refused", EMAIL, IP, {"by": "admin", "reason": "passkey_limit"})


def test_a_2fa_reset_clears_the_second_factor_and_ends_sign_ins_in_progress_only(ctx: Context) -> None:
    account = add_enrolled(ctx)
    ctx.db.run(lambda tx: tx.execute("UPDATE users SET totp_last_step = 99"))
    signed_in = session_for(ctx, account.id, ACTIVE)
    session_for(ctx, account.id, TOTP)
    token = _stepped_up(ctx)
    user = admin.admin_reset_2fa(ctx, EMAIL, token, IP)
    assert not user.totp_enrolled
    assert rows(
        ctx, "SELECT totp_secret, totp_last_step, recovery_hash FROM users WHERE email = ?", (EMAIL,)
    ) == [{"totp_secret": None, "totp_last_step": 0, "recovery_hash": None}]
    assert [r["token_hash"] for r in rows(ctx, "SELECT token_hash FROM sessions")] == [token_hash(signed_in)]
    assert events(ctx) == [
        ("admin_step_up", ALERTS[0], IP, {"method": "totp"}),
        ("totp_reset", EMAIL, IP, {"by": ALERTS[0]}),
    ]
