"""Issue #14 paths no other test could fail on: an admin 2FA reset between the password step and the 2FA
step, the 2FA step's own re-read of the account, the rate limit on the unauthenticated ``/api/signout``,
the JSON content type on PATCH, and suspicious-IP throttling at the 2FA step."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyctl.server import ServerHandle, start
from tests.server.conftest import (
    ADMIN,
    EMAIL,
    PASSWORD,
    FakeClock,
    admin,
    client,
    enroll,
    error_of,
    register,
    snapshot,
    sql,
    stepped_up,
    totp_code,
)
from tests.server.softauth import SoftAuthenticator

SECOND_STEPS = ["/api/signin/totp", "/api/signin/recovery"]


@pytest.mark.parametrize("second_step", SECOND_STEPS)
def test_admin_2fa_reset_between_the_password_step_and_the_2fa_step(
    server: ServerHandle, clock: FakeClock, second_step: str
) -> None:
    """The issue's own sequence: password step done, then the reset, then the code (once a 500)."""
    account = enroll(server, clock)
    root = stepped_up(server, clock, enroll(server, clock, ADMIN))
    clock.advance(30)
    http = client(server)
    step = http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    assert step.json() == {"status": "totp_required"}, step.text
    with root as a:
        assert a.post(f"/api/admin/users/{EMAIL}/reset-2fa", json={}).status_code == 200
    before = snapshot(server)
    body = {"code": totp_code(account.secret, clock()), "recovery_code": account.recovery_code}
    response = http.post(second_step, json=body)
    assert response.status_code == 401, response.text
    assert error_of(response) in ("not_signed_in", "session_expired")  # the reset ended that sign-in
    assert snapshot(server) == before
    assert http.get("/api/me").status_code == 401
    again = client(server).post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    assert again.json() == {"status": "totp_enrollment_required"}


@pytest.mark.parametrize("second_step", SECOND_STEPS)
def test_the_2fa_step_reads_the_account_in_its_own_transaction(
    server: ServerHandle, clock: FakeClock, second_step: str
) -> None:
    """A pending 2FA step whose account lost its secret and recovery code while the sign-in kept its
    session (what a reset racing the step leaves): ``session_expired``, not a 500 on a None secret."""
    account = enroll(server, clock)
    clock.advance(30)
    http = client(server)
    step = http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    assert step.json() == {"status": "totp_required"}, step.text
    sql(
        server,
        "UPDATE users SET totp_secret = NULL, recovery_hash = NULL WHERE email = ? RETURNING id",
        (EMAIL,),
    )
    before = snapshot(server)
    body = {"code": totp_code(account.secret, clock()), "recovery_code": account.recovery_code}
    response = http.post(second_step, json=body)
    assert response.status_code == 401, response.text
    assert error_of(response) == "session_expired"
    assert snapshot(server) == before
    assert http.get("/api/me").status_code == 401


def test_signout_is_rate_limited_like_the_other_auth_endpoints(
    db_target: Path | str, clock: FakeClock
) -> None:
    """``/api/signout`` needs no session, so without the limit it was a free way to flood the server."""
    with start(db_target, clock=clock, rate_limit=5) as server:
        http = client(server)
        for _ in range(5):
            assert error_of(http.post("/api/signout", json={})) == "not_signed_in"
        limited = http.post("/api/signout", json={})
        assert limited.status_code == 429, limited.text
        assert error_of(limited) == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        clock.advance(60)
        assert error_of(http.post("/api/signout", json={})) == "not_signed_in"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", b"name=renamed"),
        ("text/plain", b'{"name": "renamed"}'),
        (None, b'{"name": "renamed"}'),
    ],
)
def test_a_patch_needs_a_json_content_type_too(
    server: ServerHandle, clock: FakeClock, content_type: str | None, body: bytes
) -> None:
    account = enroll(server, clock)
    assert register(account.http, SoftAuthenticator(server.url)).status_code == 200
    passkey = account.http.get("/api/passkeys").json()["passkeys"][0]
    before = snapshot(server)
    headers = {"Content-Type": content_type} if content_type else {}
    response = account.http.patch(f"/api/passkeys/{passkey['id']}", content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert error_of(response) == "unsupported_media_type"
    assert snapshot(server) == before
    assert account.http.get("/api/passkeys").json()["passkeys"][0]["name"] == passkey["name"]


def test_2fa_failures_spend_the_ip_allowance_and_a_blocked_ip_stops_at_the_2fa_step(
    db_target: Path | str, clock: FakeClock
) -> None:
    """Suspicious-IP throttling counts wrong codes as it counts wrong passwords, and a sign-in already past
    its password step cannot finish from the blocked IP."""
    with start(db_target, clock=clock, rate_limit=100_000, max_failures=5, ip_max_failures=4) as server:
        accounts = [enroll(server, clock, f"user{n}@example.com") for n in range(3)]
        clock.advance(30)
        waiting = client(server)
        step = waiting.post("/api/signin/password", json={"email": accounts[0].email, "password": PASSWORD})
        assert step.json() == {"status": "totp_required"}, step.text
        for account in accounts[1:]:  # two wrong codes on each of two accounts: neither reaches its 5
            http = client(server)
            http.post("/api/signin/password", json={"email": account.email, "password": PASSWORD})
            wrong = totp_code(account.secret, clock() + 3600)
            for _ in range(2):
                assert error_of(http.post("/api/signin/totp", json={"code": wrong})) == "invalid_code"
        code = totp_code(accounts[0].secret, clock())
        refused = waiting.post("/api/signin/totp", json={"code": code})
        assert refused.status_code == 429, refused.text
        assert error_of(refused) == "ip_blocked"
        with admin(server) as a:
            assert [b["ip"] for b in a.get("/api/admin/blocks").json()["ip_blocks"]] == ["127.0.0.1"]
            assert a.get("/api/admin/blocks").json()["blocks"] == []
            assert a.post("/api/admin/unblock", json={"ip": "127.0.0.1"}).status_code == 200
        assert waiting.post("/api/signin/totp", json={"code": code}).status_code == 200
