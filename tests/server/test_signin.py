"""Accounts, the password step, TOTP enrollment, TOTP and recovery-code sign-in, over HTTP."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from keyctl.server import ServerHandle
from tests.server.conftest import (
    EMAIL,
    PASSWORD,
    FakeClock,
    admin,
    audit_events,
    client,
    create_user,
    enroll,
    error_of,
    sign_in,
    snapshot,
    totp_code,
)


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short pass", "at least 12"),
        ("qwerty123456", "common"),  # on the list as it is
        ("Iloveyou2024!!", "common"),  # a listed word with digits and punctuation around it
    ],
)
def test_weak_passwords_are_refused(server: ServerHandle, password: str, why: str) -> None:
    with admin(server) as a:
        response = a.post("/api/admin/users", json={"email": EMAIL, "password": password})
    assert error_of(response) == "weak_password"
    assert why in response.json()["message"]
    assert snapshot(server)["users"] == []


def test_account_is_created_once(server: ServerHandle) -> None:
    create_user(server)
    with admin(server) as a:
        again = a.post("/api/admin/users", json={"email": EMAIL.upper(), "password": PASSWORD})
    assert again.status_code == 409
    assert error_of(again) == "user_exists"


def test_login_error_does_not_reveal_whether_the_account_exists(server: ServerHandle) -> None:
    create_user(server)
    wrong_password = client(server).post("/api/signin/password", json={"email": EMAIL, "password": "x" * 14})
    no_account = client(server).post(
        "/api/signin/password", json={"email": "bob@example.com", "password": "x" * 14}
    )
    assert wrong_password.status_code == no_account.status_code == 401
    assert wrong_password.json() == no_account.json()
    assert wrong_password.json()["error"] == "invalid_credentials"
    assert "keyctl_session" not in wrong_password.cookies


def test_first_login_enrolls_totp_with_a_confirmed_recovery_code(
    server: ServerHandle, clock: FakeClock
) -> None:
    create_user(server)
    http = client(server)
    assert http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD}).json() == {
        "status": "totp_enrollment_required"
    }
    # Not signed in yet: the API says what is missing.
    assert error_of(http.get("/api/me")) == "totp_enrollment_required"
    first = http.post("/api/signin/totp/enroll", json={}).json()
    again = http.post("/api/signin/totp/enroll", json={}).json()
    assert first["secret"] == again["secret"]
    assert len(first["secret"]) == 32  # 160 bits of base32
    uri = urlsplit(first["otpauth_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert parse_qs(uri.query)["secret"] == [first["secret"]]
    assert first["qr_svg"].startswith("<?xml") or first["qr_svg"].startswith("<svg")
    wrong = http.post("/api/signin/totp/enroll/verify", json={"code": "000000"})
    assert error_of(wrong) == "invalid_code"
    shown = http.post("/api/signin/totp/enroll/verify", json={"code": totp_code(first["secret"], clock())})
    assert shown.json()["status"] == "recovery_code_confirmation_required"
    recovery = shown.json()["recovery_code"]
    assert error_of(
        http.post("/api/signin/recovery/confirm", json={"recovery_code": "AAAA-BBBB-CCCC-DDDD"})
    ) == ("invalid_code")
    assert snapshot(server)["users"][0][6] is None  # TOTP not stored before the recovery code is confirmed
    done = http.post("/api/signin/recovery/confirm", json={"recovery_code": recovery.lower()})
    assert done.json() == {
        "verified": True,
        "status": "signed_in",
        "user": {"email": EMAIL},
        "method": "totp",
        "passkey_prompt": True,
        "session": done.json()["session"],  # the expiry times: test_session_expiry.py
    }
    assert http.get("/api/me").json()["email"] == EMAIL
    assert "totp_enrolled" in [e["event"] for e in audit_events(server)]


def test_abandoned_enrollment_starts_over(server: ServerHandle, clock: FakeClock) -> None:
    create_user(server)
    http = client(server)
    http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    first = http.post("/api/signin/totp/enroll", json={}).json()["secret"]
    other = client(server)
    assert other.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD}).json() == {
        "status": "totp_enrollment_required"
    }
    assert other.post("/api/signin/totp/enroll", json={}).json()["secret"] != first


def test_later_logins_need_a_totp_code_used_once(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    clock.advance(30)
    http = client(server)
    assert http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD}).json() == {
        "status": "totp_required"
    }
    assert error_of(http.get("/api/me")) == "totp_required"
    assert error_of(http.post("/api/passkeys/register/options", json={})) == "totp_required"
    code = totp_code(account.secret, clock())
    assert http.post("/api/signin/totp", json={"code": code}).json()["method"] == "totp"
    # The same code again, in a fresh sign-in within its window: a replay.
    replay = client(server)
    replay.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    refused = replay.post("/api/signin/totp", json={"code": code})
    assert error_of(refused) == "invalid_code"
    assert "already used" in refused.json()["message"]


def test_the_enrollment_code_cannot_be_replayed(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    http = client(server)
    http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    assert error_of(http.post("/api/signin/totp", json={"code": totp_code(account.secret, clock())})) == (
        "invalid_code"
    )


def test_totp_window_is_one_step_each_way(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    clock.advance(300)
    # In this order each accepted code is newer than the last one used, so replay protection stays out
    # of the way: the window alone decides.
    for offset, accepted in ((-60, False), (-30, True), (30, True), (60, False)):
        http = client(server)
        http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
        response = http.post("/api/signin/totp", json={"code": totp_code(account.secret, clock() + offset)})
        assert (response.status_code == 200) is accepted, offset


def test_malformed_totp_codes_are_refused(server: ServerHandle, clock: FakeClock) -> None:
    enroll(server, clock)
    http = client(server)
    http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    for code in ("12345", "1234567", "abcdef", " 123456"):
        assert error_of(http.post("/api/signin/totp", json={"code": code})) == "invalid_code"


def test_recovery_code_signs_in_once_and_is_replaced(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    http = client(server)
    http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    done = http.post("/api/signin/recovery", json={"recovery_code": account.recovery_code})
    assert done.json()["method"] == "recovery"
    new_code = done.json()["new_recovery_code"]
    assert new_code != account.recovery_code
    again = client(server)
    again.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    assert error_of(again.post("/api/signin/recovery", json={"recovery_code": account.recovery_code})) == (
        "invalid_code"
    )
    assert again.post("/api/signin/recovery", json={"recovery_code": new_code}).status_code == 200
    assert "recovery_code_used" in [e["event"] for e in audit_events(server)]


def test_a_pending_sign_in_expires_after_five_minutes(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    clock.advance(60)
    http = client(server)
    http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    clock.advance(301)
    response = http.post("/api/signin/totp", json={"code": totp_code(account.secret, clock())})
    assert response.status_code == 401
    assert error_of(response) == "session_expired"


def test_steps_out_of_order_are_refused(server: ServerHandle, clock: FakeClock) -> None:
    enroll(server, clock)
    fresh = client(server)
    assert error_of(fresh.post("/api/signin/totp", json={"code": "123456"})) == "not_signed_in"
    http = client(server)
    http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    assert error_of(http.post("/api/signin/totp/enroll", json={})) == "totp_required"


def test_sign_in_issues_a_new_session_token(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    clock.advance(30)
    http = client(server)
    http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    pending = http.cookies["keyctl_session"]
    http.post("/api/signin/totp", json={"code": totp_code(account.secret, clock())})
    assert http.cookies["keyctl_session"] != pending
    stale = client(server)
    stale.cookies.set("keyctl_session", pending)
    assert error_of(stale.get("/api/me")) == "not_signed_in"


def test_admin_reset_of_2fa_keeps_passkeys_and_reenrolls(server: ServerHandle, clock: FakeClock) -> None:
    from tests.server.conftest import ADMIN, register, stepped_up
    from tests.server.softauth import SoftAuthenticator

    account = enroll(server, clock)
    assert register(account.http, SoftAuthenticator(server.url)).status_code == 200
    with stepped_up(server, clock, enroll(server, clock, ADMIN)) as a:
        reset = a.post(f"/api/admin/users/{EMAIL}/reset-2fa", json={})
    assert reset.json()["totp_enrolled"] is False
    assert len(reset.json()["passkeys"]) == 1
    http = client(server)
    assert http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD}).json() == {
        "status": "totp_enrollment_required"
    }
    assert http.post("/api/signin/totp/enroll", json={}).json()["secret"] != account.secret
    assert "totp_reset" in [e["event"] for e in audit_events(server)]


def test_signed_in_session_still_works_after_later_sign_ins(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    second = sign_in(server, clock, account)
    assert account.http.get("/api/me").status_code == 200
    assert second.get("/api/me").status_code == 200
