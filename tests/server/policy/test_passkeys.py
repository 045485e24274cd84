"""``policy.passkeys``: registration (the challenge bound to its session and used up whatever the outcome,
at most 5 passkeys, the default name, an excluded credential, the device-bound-only policy), renaming and
deleting one's own passkeys only, and passkey sign-in (username-first, the sign counter, what a sign-in
writes). Responses come from the tests' software authenticator."""

from __future__ import annotations

import json

import pytest
from fido2.utils import websafe_encode

from keyctl.server.policy import passkeys
from keyctl.server.policy.core import ACTIVE, MAX_PASSKEYS, PASSKEY_ENROLLMENT, Context, token_hash
from tests.server.conftest import FakeClock
from tests.server.policy.conftest import (
    EMAIL,
    IP,
    ORIGIN,
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
from tests.server.softauth import SoftAuthenticator, unb64url


def _challenges(ctx: Context) -> list[str]:
    return [r["kind"] for r in rows(ctx, "SELECT kind FROM ceremony_challenges")]


def test_registration_stores_the_passkey_and_uses_up_its_challenge(ctx: Context, clock: FakeClock) -> None:
    user = add_user(ctx)
    token = session_for(ctx, user)
    key = SoftAuthenticator(ORIGIN)
    options = passkeys.register_options(ctx, token, "Desk key", "required", "preferred", IP)
    assert options["authenticatorSelection"]["residentKey"] == "required"
    [challenge] = rows(ctx, "SELECT * FROM ceremony_challenges")
    assert (challenge["kind"], challenge["user_id"], challenge["session_hash"], challenge["name"]) == (
        "register",
        user,
        token_hash(token),
        "Desk key",
    )
    response = key.create(options, transports=("usb", "nfc"))
    email, passkey = passkeys.register_verify(ctx, token, response, IP)
    assert (email, passkey.name, passkey.transports, passkey.sign_count) == (
        EMAIL,
        "Desk key",
        ("usb", "nfc"),
        0,
    )
    [stored] = rows(ctx, "SELECT * FROM passkeys")
    assert (stored["user_id"], json.loads(stored["transports"]), stored["attestation_format"]) == (
        user,
        ["usb", "nfc"],
        "none",
    )
    assert _challenges(ctx) == []
    again = refusal(lambda: passkeys.register_verify(ctx, token, response, IP))
    assert again.code == "session_expired"
    assert events(ctx)[0][0] == "passkey_registered"


def test_a_failed_registration_writes_nothing_but_still_uses_up_the_challenge(ctx: Context) -> None:
    token = session_for(ctx, add_user(ctx))
    key = SoftAuthenticator(ORIGIN)
    options = passkeys.register_options(ctx, token, None, None, None, IP)
    before = {table: value for table, value in state(ctx).items() if table != "ceremony_challenges"}
    bad = key.create(options, origin="https://evil.example")
    assert refusal(lambda: passkeys.register_verify(ctx, token, bad, IP)).code == "verification_failed"
    assert {t: v for t, v in state(ctx).items() if t != "ceremony_challenges"} == before
    assert _challenges(ctx) == []
    good = key.create(options)
    assert refusal(lambda: passkeys.register_verify(ctx, token, good, IP)).code == "session_expired"
    assert names(ctx) == ["passkey_register_refused"]


@pytest.mark.parametrize("transports", [[""], ["x" * 17], ["usb"] * 9, "usb", [5]])
def test_malformed_transports_are_refused_and_the_challenge_kept(ctx: Context, transports: object) -> None:
    """``response.transports`` is a list of at most 8 names of 1 to 16 characters; anything else (an empty
    name too) is refused as invalid_request before the ceremony starts: nothing stored, and the challenge
    is still there for a corrected response."""
    token = session_for(ctx, add_user(ctx))
    options = passkeys.register_options(ctx, token, None, None, None, IP)
    good = SoftAuthenticator(ORIGIN).create(options)
    bad = {**good, "response": {**good["response"], "transports": transports}}
    refused = refusal(lambda: passkeys.register_verify(ctx, token, bad, IP))
    assert (refused.code, refused.message) == (
        "invalid_request",
        "response.transports must be a list of transport names",
    )
    assert rows(ctx, "SELECT * FROM passkeys") == []
    assert _challenges(ctx) == ["register"]


def test_a_challenge_issued_to_another_session_is_refused(ctx: Context) -> None:
    user = add_user(ctx)
    mine, theirs = session_for(ctx, user), session_for(ctx, user)
    options = passkeys.register_options(ctx, theirs, None, None, None, IP)
    response = SoftAuthenticator(ORIGIN).create(options)
    assert refusal(lambda: passkeys.register_verify(ctx, mine, response, IP)).code == "session_expired"
    assert rows(ctx, "SELECT * FROM passkeys") == []
    assert _challenges(ctx) == []


def test_at_most_five_passkeys_named_by_default_in_order(ctx: Context) -> None:
    token = session_for(ctx, add_user(ctx))
    ids = [add_passkey(ctx, token, SoftAuthenticator(ORIGIN)) for _ in range(MAX_PASSKEYS)]
    assert [p.name for p in passkeys.list_passkeys(ctx, token)] == [f"Passkey {n}" for n in range(1, 6)]
    assert [p.id for p in passkeys.list_passkeys(ctx, token)] == ids
    assert (
        refusal(lambda: passkeys.register_options(ctx, token, None, None, None, IP)).code == "passkey_limit"
    )
    passkeys.delete_passkey(ctx, token, ids[1], IP)
    add_passkey(ctx, token, SoftAuthenticator(ORIGIN))
    assert [p.name for p in passkeys.list_passkeys(ctx, token)][-1] == "Passkey 6"  # "Passkey 5" is taken


def test_a_credential_already_registered_is_excluded_and_refused(ctx: Context) -> None:
    user = add_user(ctx)
    token = session_for(ctx, user)
    key = SoftAuthenticator(ORIGIN)
    first = add_passkey(ctx, token, key)
    options = passkeys.register_options(ctx, token, None, None, None, IP)
    assert [d["id"] for d in options["excludeCredentials"]] == [first]
    other = session_for(ctx, add_user(ctx, "bob@example.com"))
    options = passkeys.register_options(ctx, other, None, None, None, IP)
    copy = key.create(options, check_exclude=False, credential_id=unb64url(first))
    assert refusal(lambda: passkeys.register_verify(ctx, other, copy, IP)).code == "credential_excluded"
    assert len(rows(ctx, "SELECT * FROM passkeys")) == 1


def test_device_bound_only_refuses_a_synced_passkey(ctx: Context) -> None:
    strict = configured(ctx, device_bound_only=True)
    token = session_for(ctx, add_user(ctx))
    options = passkeys.register_options(strict, token, None, None, None, IP)
    synced = SoftAuthenticator(ORIGIN, backup=True).create(options)
    assert refusal(lambda: passkeys.register_verify(strict, token, synced, IP)).code == "verification_failed"
    assert events(ctx)[-1][3]["policy"] == "device_bound_only"
    add_passkey(strict, token, SoftAuthenticator(ORIGIN))


def test_an_enrollment_session_registers_one_passkey_and_ends(ctx: Context) -> None:
    token = session_for(ctx, add_user(ctx), PASSKEY_ENROLLMENT)
    add_passkey(ctx, token, SoftAuthenticator(ORIGIN))
    assert rows(ctx, "SELECT * FROM sessions") == []
    assert events(ctx)[-1][3]["via"] == "enrollment"


def test_rename_and_delete_touch_only_the_sessions_own_passkeys(ctx: Context) -> None:
    key = SoftAuthenticator(ORIGIN)
    alice = session_for(ctx, add_user(ctx))
    bob = session_for(ctx, add_user(ctx, "bob@example.com"))
    mine = add_passkey(ctx, alice, key)
    assert refusal(lambda: passkeys.rename_passkey(ctx, bob, mine, "Stolen", IP)).code == "not_found"
    assert refusal(lambda: passkeys.delete_passkey(ctx, bob, mine, IP)).code == "not_found"
    assert refusal(lambda: passkeys.rename_passkey(ctx, alice, mine, "\x00", IP)).code == "invalid_request"
    assert passkeys.rename_passkey(ctx, alice, mine, "  Laptop  ", IP).name == "Laptop"
    assert rows(ctx, "SELECT name FROM passkeys") == [{"name": "Laptop"}]
    passkeys.delete_passkey(ctx, alice, mine, IP)
    assert rows(ctx, "SELECT * FROM passkeys") == []


def test_a_passkey_sign_in_writes_the_counter_a_session_and_the_place(ctx: Context, clock: FakeClock) -> None:
    user = add_user(ctx)
    key = SoftAuthenticator(ORIGIN)
    credential = add_passkey(ctx, session_for(ctx, user), key)
    ctx.db.run(lambda tx: tx.execute("DELETE FROM sessions"))
    ctx.db.run(lambda tx: tx.execute("INSERT INTO failures (ip, email, count) VALUES (?, ?, 2)", (IP, EMAIL)))
    clock.advance(60)
    options = passkeys.login_options(ctx, None, None)
    assert options["allowCredentials"] == []
    assert _challenges(ctx) == ["login"]
    signed_in = passkeys.login_verify(ctx, key.get(options, counter=7), IP)
    assert (signed_in.email, signed_in.method, signed_in.credential_id) == (EMAIL, "passkey", credential)
    [stored] = rows(ctx, "SELECT sign_count, last_used_at FROM passkeys")
    assert stored == {"sign_count": 7, "last_used_at": clock()}
    assert rows(ctx, "SELECT token_hash, stage FROM sessions") == [
        {"token_hash": token_hash(signed_in.token), "stage": ACTIVE}
    ]
    assert rows(ctx, "SELECT * FROM failures") == []
    assert rows(ctx, "SELECT ip FROM signin_locations") == [{"ip": IP}]
    assert events(ctx)[-1] == ("signin_ok", EMAIL, IP, {"credential_id": credential, "method": "passkey"})


def test_a_counter_that_does_not_grow_is_refused_and_changes_nothing(ctx: Context) -> None:
    user = add_user(ctx)
    key = SoftAuthenticator(ORIGIN)
    add_passkey(ctx, session_for(ctx, user), key)
    passkeys.login_verify(ctx, key.get(passkeys.login_options(ctx, EMAIL, None), counter=5), IP)
    before = state(ctx)
    replay = key.get(passkeys.login_options(ctx, EMAIL, None), counter=5)
    assert refusal(lambda: passkeys.login_verify(ctx, replay, IP)).code == "verification_failed"
    assert state(ctx) == before
    assert events(ctx)[-1][0] == "counter_regression"


def test_username_first_options_accept_only_that_accounts_passkeys(ctx: Context) -> None:
    key = SoftAuthenticator(ORIGIN)
    add_passkey(ctx, session_for(ctx, add_user(ctx)), key)
    add_user(ctx, "bob@example.com")
    options = passkeys.login_options(ctx, "BOB@example.com", "required")
    assert options["allowCredentials"] == []
    assert options["userVerification"] == "required"
    [challenge] = rows(ctx, "SELECT username_first, user_verification FROM ceremony_challenges")
    assert challenge == {"username_first": 1, "user_verification": "required"}
    [credential] = key.credentials
    response = key.get(options, credential_id=credential)
    sessions_before = rows(ctx, "SELECT * FROM sessions")
    assert refusal(lambda: passkeys.login_verify(ctx, response, IP)).code == "unknown_credential"
    assert rows(ctx, "SELECT * FROM sessions") == sessions_before
    assert _challenges(ctx) == []
    assert events(ctx)[-1][3] == {"credential_id": websafe_encode(credential), "reason": "unknown_credential"}
