"""Step-up for the admin actions (#19 item 2): resetting an account's 2FA, deleting an account and deleting
one of its passkeys need, besides the admin token, a step-up of a named admin (an ``--admin-email`` account,
with its own TOTP code or passkey) at most 5 minutes old, carried as the ``Keyctl-Step-Up`` header; without
it they answer ``step_up_required`` (403, with what is needed) and change nothing, and the audit names the
admin. Real server over HTTP on both backends, the clock injected, codes from oathtool, assertions from the
tests' own software authenticator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from keyctl.server import ServerHandle, start
from tests.server.conftest import (
    ADMIN,
    EMAIL,
    FakeClock,
    admin,
    audit_events,
    enroll,
    register,
    snapshot,
    stepped_up,
    totp_code,
)
from tests.server.softauth import SoftAuthenticator

STEP_UP = 5 * 60


def sensitive(http: httpx.Client, email: str, passkey_id: str) -> dict[str, httpx.Response]:
    return {
        "reset_2fa": http.post(f"/api/admin/users/{email}/reset-2fa", json={}),
        "delete_passkey": http.delete(f"/api/admin/users/{email}/passkeys/{passkey_id}"),
        "delete_user": http.delete(f"/api/admin/users/{email}"),
    }


def refused(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 403, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == "step_up_required", body
    return body


def error_code(response: httpx.Response) -> str:
    assert 400 <= response.status_code < 500, response.text
    return str(response.json()["error"])


def step_up(server: ServerHandle, email: str, code: str) -> httpx.Response:
    with admin(server) as a:
        return a.post("/api/admin/step-up/totp", json={"email": email, "code": code})


def with_token(server: ServerHandle, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.admin_token}", "Keyctl-Step-Up": token},
    )


def test_admin_actions_need_a_named_admins_step_up_at_most_5_minutes_old(
    server: ServerHandle, clock: FakeClock
) -> None:
    account = enroll(server, clock)
    passkey = register(account.http, SoftAuthenticator(server.url)).json()["passkey"]
    root = enroll(server, clock, ADMIN)
    before = snapshot(server)
    # The token alone, or with a made-up step-up token: refused, with what is needed; nothing changed.
    for headers in ({}, {"Keyctl-Step-Up": "made-up"}):
        with admin(server) as a:
            a.headers.update(headers)
            for response in sensitive(a, EMAIL, passkey["id"]).values():
                body = refused(response)
                assert body["message"] == (
                    "Confirm it's you: this admin action needs a named admin's step-up (a TOTP code or "
                    "a passkey of an --admin-email account) at most 5 minutes old"
                )
                assert body["step_up"] == {
                    "header": "Keyctl-Step-Up",
                    "methods": {
                        "totp": "/api/admin/step-up/totp",
                        "passkey": "/api/admin/step-up/passkey/options",
                    },
                    "max_age_seconds": STEP_UP,
                }
    assert snapshot(server) == before
    required = [e for e in audit_events(server) if e["event"] == "step_up_required"]
    assert [(e["email"], e["detail"]["action"], e["detail"]["by"]) for e in required] == 2 * [
        (EMAIL, "reset_2fa", "admin"),
        (EMAIL, "delete_passkey", "admin"),
        (EMAIL, "delete_user", "admin"),
    ]
    # The admin steps up with a code of their own account; the token holds for 5 minutes.
    clock.advance(30)
    done = step_up(server, ADMIN.upper(), totp_code(root.secret, clock()))
    assert done.status_code == 200, done.text
    answer = done.json()
    assert answer["status"] == "verified"
    assert answer["admin"] == ADMIN
    assert answer["header"] == "Keyctl-Step-Up"
    issued = clock()
    with with_token(server, answer["step_up_token"]) as a:
        clock.advance(STEP_UP - 1)  # 4:59
        deleted = a.delete(f"/api/admin/users/{EMAIL}/passkeys/{passkey['id']}")
        assert deleted.json() == {"status": "deleted"}, deleted.text
        clock.advance(2)  # 5:01
        assert clock() - issued == STEP_UP + 1
        before = snapshot(server)
        refused(a.post(f"/api/admin/users/{EMAIL}/reset-2fa", json={}))
        refused(a.delete(f"/api/admin/users/{EMAIL}"))
        assert snapshot(server) == before
    # A new step-up: the 2FA reset and the deletion run, and the audit names the admin.
    with stepped_up(server, clock, root) as a:
        assert a.post(f"/api/admin/users/{EMAIL}/reset-2fa", json={}).json()["totp_enrolled"] is False
        assert a.delete(f"/api/admin/users/{EMAIL}").json() == {"status": "deleted"}
    events = {e["event"]: e for e in audit_events(server) if e["event"] in ("passkey_deleted", "totp_reset")}
    assert events["passkey_deleted"]["detail"] == {"by": ADMIN, "credential_id": passkey["id"]}
    assert events["totp_reset"]["detail"] == {"by": ADMIN}
    [gone] = [e for e in audit_events(server) if e["event"] == "user_deleted"]
    assert (gone["email"], gone["detail"]) == (EMAIL, {"by": ADMIN, "passkeys": 0})
    step_ups = [(e["email"], e["detail"]) for e in audit_events(server) if e["event"] == "admin_step_up"]
    assert step_ups == 2 * [(ADMIN, {"method": "totp"})]


def test_only_a_named_admin_steps_up_and_wrong_codes_count(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    clock.advance(30)
    # An account that is not an admin's, even with a right code of its own; an admin without an account.
    not_admin = step_up(server, EMAIL, totp_code(account.secret, clock()))
    assert error_code(not_admin) == "invalid_request"
    assert not_admin.json()["message"] == (
        f"{EMAIL} is not an admin of this server (keyctl server --admin-email EMAIL)"
    )
    no_account = step_up(server, ADMIN, "123456")
    assert error_code(no_account) == "invalid_request"
    assert "has no account on this server" in no_account.json()["message"]
    root = enroll(server, clock, ADMIN)
    # The admin token is needed too.
    clock.advance(30)
    code = totp_code(root.secret, clock())
    anonymous = httpx.post(
        f"{server.url}/api/admin/step-up/totp", json={"email": ADMIN, "code": code}, headers={}
    )
    assert error_code(anonymous) == "unauthorized"
    # Each code once.
    assert step_up(server, ADMIN, code).status_code == 200
    replayed = step_up(server, ADMIN, code)
    assert error_code(replayed) == "invalid_code"
    assert "already used" in replayed.json()["message"]
    # Wrong codes count like wrong sign-in codes: the fifth blocks the admin's account from this address.
    for _ in range(4):
        assert error_code(step_up(server, ADMIN, "000000")) == "invalid_code"
    clock.advance(30)
    assert error_code(step_up(server, ADMIN, totp_code(root.secret, clock()))) == "blocked"
    failed = [e for e in audit_events(server) if e["event"] == "admin_step_up_failed"]
    assert [(e["email"], e["detail"]["reason"]) for e in failed] == 5 * [(ADMIN, "invalid_code")]
    assert any(e["event"] == "signin_blocked" and e["email"] == ADMIN for e in audit_events(server))


def test_an_admin_steps_up_with_a_passkey(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    users_key = SoftAuthenticator(server.url)
    passkey = register(account.http, users_key).json()["passkey"]
    root = enroll(server, clock, ADMIN)
    roots_key = SoftAuthenticator(server.url)
    roots_passkey = register(root.http, roots_key).json()["passkey"]
    with admin(server) as a:
        options = a.post("/api/admin/step-up/passkey/options", json={"email": ADMIN}).json()
        assert options["userVerification"] == "required"
        assert [c["id"] for c in options["allowCredentials"]] == [roots_passkey["id"]]
        # The user's passkey does not step the admin up (and the attempt uses the challenge up).
        foreign = a.post(
            "/api/admin/step-up/passkey/verify",
            json=users_key.get(options, credential_id=next(iter(users_key.credentials))),
        )
        assert error_code(foreign) == "unknown_credential"
        assert error_code(a.post("/api/admin/step-up/passkey/verify", json=roots_key.get(options))) == (
            "session_expired"
        )
        # The user cannot ask for options: not an admin.
        assert error_code(a.post("/api/admin/step-up/passkey/options", json={"email": EMAIL})) == (
            "invalid_request"
        )
        options = a.post("/api/admin/step-up/passkey/options", json={"email": ADMIN}).json()
        done = a.post("/api/admin/step-up/passkey/verify", json=roots_key.get(options))
        assert done.status_code == 200, done.text
    assert done.json()["admin"] == ADMIN
    with with_token(server, done.json()["step_up_token"]) as a:
        assert a.delete(f"/api/admin/users/{EMAIL}/passkeys/{passkey['id']}").status_code == 200
    step_ups = [(e["email"], e["detail"]) for e in audit_events(server) if e["event"] == "admin_step_up"]
    assert step_ups == [(ADMIN, {"method": "passkey"})]


def test_a_token_ends_when_its_admin_is_no_longer_one(db_target: Path | str, clock: FakeClock) -> None:
    with start(db_target, clock=clock, rate_limit=100_000, admin_emails=(ADMIN,)) as server:
        enroll(server, clock)
        root = enroll(server, clock, ADMIN)
        token = str(stepped_up(server, clock, root).headers["Keyctl-Step-Up"])
    # The same database, started without admins: the token names nobody the server trusts, and the
    # refusal says how to name admins.
    with start(db_target, clock=clock, rate_limit=100_000) as server, with_token(server, token) as a:
        body = refused(a.post(f"/api/admin/users/{EMAIL}/reset-2fa", json={}))
        assert "this server has no admins: start it with --admin-email EMAIL" in body["message"]
        assert a.get("/api/admin/users").json()["users"][0]["totp_enrolled"] is True
