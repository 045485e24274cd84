"""Step-up for sensitive actions (#19 item 2): adding, renaming or deleting a passkey and changing the
password need a verification at most 5 minutes old (the sign-in, a TOTP code or a passkey assertion);
without one they answer ``step_up_required`` and change nothing. Injected clock, codes from oathtool,
assertions from the tests' own software authenticator."""

from __future__ import annotations

import httpx
import pytest

from keyctl.server import ServerHandle, passwords
from tests.server.conftest import (
    EMAIL,
    PASSWORD,
    FakeClock,
    audit_events,
    client,
    enroll,
    error_of,
    register,
    sign_in,
    snapshot,
    totp_code,
)
from tests.server.softauth import SoftAuthenticator

STEP_UP = 5 * 60
NEW_PASSWORD = "another long passphrase 77"


def sensitive_actions(http: httpx.Client, passkey_id: str) -> dict[str, httpx.Response]:
    return {
        "add": http.post("/api/passkeys/register/options", json={}),
        "rename": http.patch(f"/api/passkeys/{passkey_id}", json={"name": "Renamed"}),
        "password": http.post("/api/account/password", json={"new_password": NEW_PASSWORD}),
        "delete": http.delete(f"/api/passkeys/{passkey_id}"),
    }


def test_sensitive_actions_need_a_verification_at_most_5_minutes_old(
    server: ServerHandle, clock: FakeClock
) -> None:
    account = enroll(server, clock)
    key = SoftAuthenticator(server.url)
    clock.advance(STEP_UP - 1)  # the sign-in itself is a verification, for 5 minutes
    passkey = register(account.http, key).json()["passkey"]
    clock.advance(1)
    before = snapshot(server)
    refused = sensitive_actions(account.http, passkey["id"])
    for response in refused.values():
        assert response.status_code == 403, response.text
        assert error_of(response) == "step_up_required"
        assert "Confirm it's you" in response.json()["message"]
    assert snapshot(server) == before
    assert [e["detail"]["action"] for e in audit_events(server) if e["event"] == "step_up_required"] == [
        "add_passkey",
        "rename_passkey",
        "change_password",
        "delete_passkey",
    ]
    # A TOTP code renews it for 5 minutes.
    clock.advance(30)
    code = totp_code(account.secret, clock())
    done = account.http.post("/api/step-up/totp", json={"code": code})
    assert done.json()["status"] == "verified", done.text
    assert error_of(account.http.post("/api/step-up/totp", json={"code": code})) == "invalid_code"  # once
    clock.advance(STEP_UP - 1)
    allowed = sensitive_actions(account.http, passkey["id"])
    assert [allowed[action].status_code for action in ("add", "rename", "password")] == [200, 200, 200]
    assert allowed["delete"].status_code == 200, allowed["delete"].text
    passkey = register(account.http, key).json()["passkey"]
    clock.advance(1)
    assert error_of(account.http.delete(f"/api/passkeys/{passkey['id']}")) == "step_up_required"


def test_a_wrong_step_up_code_counts_as_a_failed_attempt(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    clock.advance(STEP_UP)
    for _ in range(5):
        assert error_of(account.http.post("/api/step-up/totp", json={"code": "000000"})) == "invalid_code"
    clock.advance(30)
    blocked = account.http.post("/api/step-up/totp", json={"code": totp_code(account.secret, clock())})
    assert error_of(blocked) == "blocked"


def test_a_passkey_assertion_steps_up(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    key = SoftAuthenticator(server.url)
    passkey = register(account.http, key).json()["passkey"]
    clock.advance(STEP_UP)
    options = account.http.post("/api/step-up/passkey/options", json={}).json()
    assert options["userVerification"] == "required"
    assert [c["id"] for c in options["allowCredentials"]] == [passkey["id"]]
    # Another account's passkey does not step this one up; the challenge is used up by the attempt.
    other = enroll(server, clock, "bob@example.com")
    other_key = SoftAuthenticator(server.url)
    register(other.http, other_key)
    foreign = other_key.get(
        options, credential_id=other_key.credentials[next(iter(other_key.credentials))].id
    )
    assert error_of(account.http.post("/api/step-up/passkey/verify", json=foreign)) == "unknown_credential"
    # A step-up ceremony begun in one session does not verify another session of the same account.
    second = sign_in(server, clock, account)
    clock.advance(STEP_UP)
    options = account.http.post("/api/step-up/passkey/options", json={}).json()
    assert error_of(second.post("/api/step-up/passkey/verify", json=key.get(options))) == "session_expired"
    options = account.http.post("/api/step-up/passkey/options", json={}).json()
    done = account.http.post("/api/step-up/passkey/verify", json=key.get(options))
    assert done.json()["status"] == "verified", done.text
    assert account.http.delete(f"/api/passkeys/{passkey['id']}").status_code == 200
    assert error_of(second.delete(f"/api/passkeys/{passkey['id']}")) == "step_up_required"


def test_a_verification_running_out_during_the_password_hash_refuses_the_change(
    server: ServerHandle, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step-up is checked again once the new password is hashed (a slow hash): at 4:59 before it and
    5:01 after it, the change is refused and the old password stays."""
    account = enroll(server, clock)
    clock.advance(STEP_UP - 1)
    slow = passwords.hash_password

    def hashing(password: str) -> str:
        clock.advance(2)
        return slow(password)

    monkeypatch.setattr(passwords, "hash_password", hashing)
    refused = account.http.post("/api/account/password", json={"new_password": NEW_PASSWORD})
    assert error_of(refused) == "step_up_required", refused.text
    step = client(server).post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    assert step.json() == {"status": "totp_required"}


def test_a_password_change_ends_the_other_sessions(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    other = sign_in(server, clock, account)
    assert error_of(account.http.post("/api/account/password", json={"new_password": "short"})) == (
        "weak_password"
    )
    changed = account.http.post("/api/account/password", json={"new_password": NEW_PASSWORD})
    assert changed.json() == {"status": "password_changed"}, changed.text
    assert account.http.get("/api/me").status_code == 200
    assert error_of(other.get("/api/me")) == "not_signed_in"
    wrong = client(server).post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    assert error_of(wrong) == "invalid_credentials"
    step = client(server).post("/api/signin/password", json={"email": EMAIL, "password": NEW_PASSWORD})
    assert step.json() == {"status": "totp_required"}
