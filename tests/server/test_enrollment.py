"""Admin-initiated enrollment sessions: a technician registers one passkey for one account, nothing else."""

from __future__ import annotations

import httpx

from keyctl.server import ServerHandle
from keyctl.server.policy import MAX_PASSKEYS, PENDING_TTL
from tests.server.conftest import (
    EMAIL,
    FakeClock,
    admin,
    audit_events,
    client,
    create_user,
    enroll,
    error_of,
    register,
    snapshot,
)
from tests.server.softauth import SoftAuthenticator

BOB = "bob@example.com"


def enrollment(server: ServerHandle, email: str = EMAIL) -> tuple[httpx.Response, httpx.Client]:
    """Ask the admin API for an enrollment session; the returned client holds its cookie."""
    http = client(server)
    with admin(server) as a:
        response = a.post(f"/api/admin/users/{email}/enrollment", json={})
    if response.status_code == 201:
        http.cookies.set("keyctl_session", response.cookies["keyctl_session"])
    return response, http


def test_an_enrollment_session_registers_one_passkey_and_ends(server: ServerHandle, clock: FakeClock) -> None:
    create_user(server)
    response, http = enrollment(server)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "enrollment_session"
    assert body["user"] == {"email": EMAIL}
    assert body["expires_at"].endswith("Z")
    token = response.cookies["keyctl_session"]
    assert token
    assert token not in response.text  # the token travels only as the cookie
    key = SoftAuthenticator(server.url)
    registered = register(http, key)
    assert registered.status_code == 200, registered.text
    assert registered.json()["user"] == {"email": EMAIL}
    # Single use: the same session cannot register a second passkey.
    again = http.post("/api/passkeys/register/options", json={})
    assert again.status_code == 401
    assert error_of(again) == "not_signed_in"
    events = [(e["event"], e["email"], e["detail"]) for e in audit_events(server)]
    assert ("enrollment_session_created", EMAIL, {"by": "admin"}) in events
    [done] = [e for e in events if e[0] == "passkey_registered"]
    assert done[2]["via"] == "enrollment"
    assert done[2]["credential_id"] == registered.json()["passkey"]["id"]


def test_an_enrollment_session_can_do_nothing_else(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)  # signed in, with TOTP: the session must not reach any of that
    passkey = register(account.http, SoftAuthenticator(server.url)).json()["passkey"]
    _, http = enrollment(server)
    before = snapshot(server)
    refused = [
        http.get("/api/me"),
        http.get("/api/passkeys"),
        http.patch(f"/api/passkeys/{passkey['id']}", json={"name": "stolen"}),
        http.delete(f"/api/passkeys/{passkey['id']}"),
        http.post("/api/passkeys/prompt", json={"action": "skip"}),
        http.post("/api/signin/totp/enroll", json={}),
        http.post("/api/signin/totp", json={"code": "123456"}),
        http.post("/api/signin/recovery", json={"recovery_code": "x"}),
    ]
    for response in refused:
        assert response.status_code == 401, (response.request.url, response.text)
        assert error_of(response) == "not_signed_in"
        assert "can only register a passkey" in response.json()["message"]
    # Nor the admin API: the cookie is no admin token.
    assert error_of(http.get("/api/admin/users")) == "unauthorized"
    assert snapshot(server) == before
    # The options it gets are for its one account, and exclude that account's passkeys.
    options = http.post("/api/passkeys/register/options", json={}).json()
    assert options["user"]["name"] == EMAIL
    assert [c["id"] for c in options["excludeCredentials"]] == [passkey["id"]]


def test_an_enrollment_session_is_bound_to_its_account(server: ServerHandle, clock: FakeClock) -> None:
    create_user(server)
    create_user(server, BOB)
    _, alice = enrollment(server)
    _, bob = enrollment(server, BOB)
    options = alice.post("/api/passkeys/register/options", json={}).json()
    # Bob's session cannot finish Alice's ceremony (the challenge is bound to the session).
    stolen = bob.post("/api/passkeys/register/verify", json=SoftAuthenticator(server.url).create(options))
    assert error_of(stolen) == "session_expired"
    with admin(server) as a:
        users = {u["email"]: u["passkeys"] for u in a.get("/api/admin/users").json()["users"]}
    assert users == {EMAIL: [], BOB: []}


def test_an_enrollment_session_expires(server: ServerHandle, clock: FakeClock) -> None:
    create_user(server)
    _, http = enrollment(server)
    clock.advance(PENDING_TTL + 1)
    late = http.post("/api/passkeys/register/options", json={})
    assert late.status_code == 401
    assert error_of(late) == "session_expired"


def test_a_new_enrollment_session_replaces_the_previous_one(server: ServerHandle, clock: FakeClock) -> None:
    create_user(server)
    _, first = enrollment(server)
    _, second = enrollment(server)
    assert error_of(first.post("/api/passkeys/register/options", json={})) == "not_signed_in"
    assert second.post("/api/passkeys/register/options", json={}).status_code == 200


def test_enrollment_needs_the_admin_token_and_a_known_account(server: ServerHandle, clock: FakeClock) -> None:
    create_user(server)
    before = snapshot(server)
    with client(server) as anonymous:
        refused = anonymous.post(f"/api/admin/users/{EMAIL}/enrollment", json={})
    assert refused.status_code == 401
    assert error_of(refused) == "unauthorized"
    assert "keyctl_session" not in refused.cookies
    unknown, _ = enrollment(server, "nobody@example.com")
    assert unknown.status_code == 404
    assert error_of(unknown) == "not_found"
    assert snapshot(server) == before


def test_enrollment_respects_the_passkey_limit(server: ServerHandle, clock: FakeClock) -> None:
    create_user(server)
    for _ in range(MAX_PASSKEYS):
        _, http = enrollment(server)
        assert register(http, SoftAuthenticator(server.url)).status_code == 200
    sixth, _ = enrollment(server)
    assert sixth.status_code == 409
    assert error_of(sixth) == "passkey_limit"
    assert "Passkey limit reached" in sixth.json()["message"]
    events = [e for e in audit_events(server) if e["event"] == "enrollment_refused"]
    assert [e["detail"] for e in events] == [{"by": "admin", "reason": "passkey_limit"}]
