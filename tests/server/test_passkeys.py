"""Passkeys over HTTP: registration rules, metadata, login (username-first and discoverable), the offer,
and every tampered or replayed response the server must refuse."""

from __future__ import annotations

import uuid

import httpx
import pytest

from keyctl.server import ServerHandle
from tests.server.conftest import (
    ADMIN,
    EMAIL,
    FakeClock,
    admin,
    audit_events,
    client,
    enroll,
    error_of,
    register,
    sign_in,
    snapshot,
    stepped_up,
)
from tests.server.softauth import BE, BS, UP, UV, Excluded, SoftAuthenticator, b64url, unb64url

YUBIKEY_5 = uuid.UUID("cb69481e-8ff7-4039-93ec-0a2729a154a8").bytes


def login(
    server: ServerHandle, authenticator: SoftAuthenticator, email: str | None = EMAIL, **tamper: object
) -> httpx.Response:
    http = client(server)
    options = http.post("/api/passkeys/login/options", json={} if email is None else {"email": email}).json()
    return http.post("/api/passkeys/login/verify", json=authenticator.get(options, **tamper))  # type: ignore[arg-type]


def test_register_stores_metadata_and_default_names(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    key = SoftAuthenticator(server.url, aaguid=YUBIKEY_5)
    first = register(account.http, key)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["verified"] is True
    assert body["status"] == "registered"
    assert body["user"] == {"email": EMAIL}
    passkey = body["passkey"]
    assert passkey["name"] == "YubiKey 5 Series"  # from the AAGUID table
    assert passkey["aaguid"] == str(uuid.UUID(bytes=YUBIKEY_5))
    assert passkey["transports"] == ["usb"]
    assert (passkey["backup_eligible"], passkey["backed_up"], passkey["sign_count"]) == (False, False, 0)
    assert passkey["last_used_at"] is None
    assert passkey["created_at"].endswith("Z")
    synced = register(account.http, SoftAuthenticator(server.url, backup=True)).json()["passkey"]
    assert synced["name"] == "Passkey 2"  # unknown AAGUID
    assert (synced["backup_eligible"], synced["backed_up"]) == (True, True)
    named = register(account.http, SoftAuthenticator(server.url), name="Alice's phone").json()["passkey"]
    assert named["name"] == "Alice's phone"
    listed = account.http.get("/api/passkeys").json()["passkeys"]
    assert [p["id"] for p in listed] == [passkey["id"], synced["id"], named["id"]]
    assert "passkey_registered" in [e["event"] for e in audit_events(server)]


def test_rename_and_delete_a_passkey(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    passkey = register(account.http, SoftAuthenticator(server.url)).json()["passkey"]
    renamed = account.http.patch(f"/api/passkeys/{passkey['id']}", json={"name": "Desk key"})
    assert renamed.json()["name"] == "Desk key"
    assert (
        error_of(account.http.patch(f"/api/passkeys/{passkey['id']}", json={"name": ""})) == "invalid_request"
    )
    assert error_of(account.http.patch("/api/passkeys/AAAA", json={"name": "x"})) == "not_found"
    assert account.http.delete(f"/api/passkeys/{passkey['id']}").json() == {"status": "deleted"}
    assert account.http.get("/api/passkeys").json()["passkeys"] == []


def test_registration_needs_a_signed_in_session(server: ServerHandle) -> None:
    assert error_of(client(server).post("/api/passkeys/register/options", json={})) == "not_signed_in"


def test_exclude_credentials_and_the_same_authenticator_twice(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    key = SoftAuthenticator(server.url)
    passkey = register(account.http, key).json()["passkey"]
    options = account.http.post("/api/passkeys/register/options", json={}).json()
    assert [d["id"] for d in options["excludeCredentials"]] == [passkey["id"]]
    assert options["excludeCredentials"][0]["transports"] == ["usb"]
    with pytest.raises(Excluded):
        key.create(options)
    # A client that ignores excludeCredentials and sends a credential id the server has is refused too.
    forged = SoftAuthenticator(server.url).create(options, credential_id=unb64url(passkey["id"]))
    before = snapshot(server)
    refused = account.http.post("/api/passkeys/register/verify", json=forged)
    assert refused.status_code == 409
    assert error_of(refused) == "credential_excluded"
    assert refused.json()["message"] == "Passkey already registered for this device"
    assert snapshot(server) == before


def test_at_most_five_passkeys(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    pending = account.http.post("/api/passkeys/register/options", json={}).json()
    for _ in range(5):
        assert register(account.http, SoftAuthenticator(server.url)).status_code == 200
    sixth = account.http.post("/api/passkeys/register/options", json={})
    assert sixth.status_code == 409
    assert error_of(sixth) == "passkey_limit"
    assert "Passkey limit reached" in sixth.json()["message"]
    # Options fetched before the limit was reached do not get around it.
    before = snapshot(server)
    late = account.http.post(
        "/api/passkeys/register/verify", json=SoftAuthenticator(server.url).create(pending)
    )
    assert error_of(late) == "passkey_limit"
    assert snapshot(server)["passkeys"] == before["passkeys"]
    assert len(account.http.get("/api/passkeys").json()["passkeys"]) == 5


def test_username_first_login_skips_totp_and_updates_metadata(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    key = SoftAuthenticator(server.url)
    passkey = register(account.http, key).json()["passkey"]
    http = client(server)
    options = http.post("/api/passkeys/login/options", json={"email": EMAIL.upper()}).json()
    assert [d["id"] for d in options["allowCredentials"]] == [passkey["id"]]
    assert options["rpId"] == "localhost"
    assert options["timeout"] == 300_000
    clock.advance(10)
    done = http.post("/api/passkeys/login/verify", json=key.get(options))
    assert done.status_code == 200, done.text
    assert done.json() == {
        "verified": True,
        "status": "signed_in",
        "user": {"email": EMAIL},
        "method": "passkey",
        "passkey_prompt": False,
        "session": done.json()["session"],  # the expiry times: test_session_expiry.py
        "credential_id": passkey["id"],
    }
    me = http.get("/api/me").json()
    assert me["passkeys"][0]["sign_count"] == 1
    assert me["passkeys"][0]["last_used_at"] is not None


def test_discoverable_login_without_a_username(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    key = SoftAuthenticator(server.url)
    register(account.http, key, residentKey="required")
    http = client(server)
    options = http.post("/api/passkeys/login/options", json={}).json()
    assert options["allowCredentials"] == []
    assert http.post("/api/passkeys/login/verify", json=key.get(options)).json()["user"] == {"email": EMAIL}


def test_unknown_email_looks_like_an_account_without_passkeys(server: ServerHandle, clock: FakeClock) -> None:
    enroll(server, clock)
    http = client(server)
    unknown = http.post("/api/passkeys/login/options", json={"email": "nobody@example.com"}).json()
    assert unknown["allowCredentials"] == []


def test_username_first_login_refuses_another_users_passkey(server: ServerHandle, clock: FakeClock) -> None:
    alice = enroll(server, clock)
    bob = enroll(server, clock, "bob@example.com")
    alice_key, bob_key = SoftAuthenticator(server.url), SoftAuthenticator(server.url)
    register(alice.http, alice_key)
    bob_passkey = register(bob.http, bob_key).json()["passkey"]
    http = client(server)
    options = http.post("/api/passkeys/login/options", json={"email": EMAIL}).json()
    response = http.post(
        "/api/passkeys/login/verify",
        json=bob_key.get(
            options, credential_id=bytes(__import__("base64").urlsafe_b64decode(bob_passkey["id"] + "=="))
        ),
    )
    assert error_of(response) == "unknown_credential"


def test_counter_regression_is_rejected_and_logged(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    key = SoftAuthenticator(server.url)
    register(account.http, key)
    assert login(server, key, counter=7).status_code == 200
    before = snapshot(server)
    cloned = login(server, key, counter=5)
    assert error_of(cloned) == "verification_failed"
    assert "cloned" in cloned.json()["message"]
    assert login(server, key, counter=7).json()["error"] == "verification_failed"  # equal is no progress
    assert snapshot(server) == before
    regressions = [e for e in audit_events(server) if e["event"] == "counter_regression"]
    assert regressions[0]["detail"]["stored"] == 7
    assert regressions[0]["detail"]["received"] == 5
    assert login(server, key, counter=8).status_code == 200


def test_authenticators_without_a_counter_are_accepted(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    key = SoftAuthenticator(server.url)
    register(account.http, key)
    assert login(server, key, counter=0).status_code == 200
    assert login(server, key, counter=0).status_code == 200


def test_tampered_assertions_are_refused(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    key = SoftAuthenticator(server.url)
    register(account.http, key)
    before = snapshot(server)
    tampering: list[tuple[dict[str, object], str]] = [
        ({"origin": "https://evil.example"}, "origin"),
        ({"rp_id": "evil.example"}, "RP ID hash"),
        ({"kind": "webauthn.create"}, "type"),
        ({"flags": UV}, "User Present"),
        ({"bad_signature": True}, "signature"),
        ({"user_handle": b"someone else"}, "user handle"),
    ]
    for tamper, message in tampering:
        response = login(server, key, **tamper)
        assert response.status_code == 400, tamper
        assert error_of(response) == "verification_failed"
        assert message in response.json()["message"]
    assert snapshot(server) == before
    failures = [e for e in audit_events(server) if e["event"] == "passkey_login_failed"]
    assert len(failures) == len(tampering)


def test_tampered_registrations_are_refused(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    before = snapshot(server)
    for tamper in (
        {"origin": "http://localhost:1"},
        {"rp_id": "example.com"},
        {"kind": "webauthn.get"},
        {"flags": 0x40 | UV},  # attested data but no user presence
    ):
        options = account.http.post("/api/passkeys/register/options", json={}).json()
        response = account.http.post(
            "/api/passkeys/register/verify",
            json=SoftAuthenticator(server.url).create(options, **tamper),  # type: ignore[arg-type]
        )
        assert error_of(response) == "verification_failed", tamper
    assert snapshot(server)["passkeys"] == before["passkeys"] == []


def test_unknown_credential_is_refused(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    register(account.http, SoftAuthenticator(server.url))
    stranger = SoftAuthenticator(server.url)
    http = client(server)
    options = http.post("/api/passkeys/login/options", json={}).json()
    stranger.create(
        {"rp": {"id": "localhost"}, "user": {"id": b64url(b"u")}, "challenge": "x", "excludeCredentials": []}
    )
    response = http.post("/api/passkeys/login/verify", json=stranger.get(options))
    assert error_of(response) == "unknown_credential"
    assert "keyctl_session" not in response.cookies


def test_expired_and_replayed_challenges_give_session_expired(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    key = SoftAuthenticator(server.url)
    register(account.http, key)
    http = client(server)
    options = http.post("/api/passkeys/login/options", json={"email": EMAIL}).json()
    clock.advance(301)
    expired = http.post("/api/passkeys/login/verify", json=key.get(options))
    assert expired.status_code == 401
    assert error_of(expired) == "session_expired"
    assert expired.json()["message"].startswith("Session expired")
    options = http.post("/api/passkeys/login/options", json={"email": EMAIL}).json()
    response = key.get(options)
    assert http.post("/api/passkeys/login/verify", json=response).status_code == 200
    assert error_of(http.post("/api/passkeys/login/verify", json=response)) == "session_expired"


def test_a_failed_verify_uses_up_the_challenge(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    key = SoftAuthenticator(server.url)
    register(account.http, key)
    http = client(server)
    options = http.post("/api/passkeys/login/options", json={"email": EMAIL}).json()
    assert error_of(http.post("/api/passkeys/login/verify", json=key.get(options, bad_signature=True))) == (
        "verification_failed"
    )
    assert error_of(http.post("/api/passkeys/login/verify", json=key.get(options))) == "session_expired"


def test_registration_challenges_expire_and_belong_to_their_session(
    server: ServerHandle, clock: FakeClock
) -> None:
    account = enroll(server, clock)
    options = account.http.post("/api/passkeys/register/options", json={}).json()
    clock.advance(301)
    assert error_of(
        account.http.post("/api/passkeys/register/verify", json=SoftAuthenticator(server.url).create(options))
    ) == ("session_expired")
    other = sign_in(server, clock, account)  # fresh: account.http's sign-in is too old to add a passkey
    options = other.post("/api/passkeys/register/options", json={}).json()
    stolen = account.http.post(
        "/api/passkeys/register/verify", json=SoftAuthenticator(server.url).create(options)
    )
    assert error_of(stolen) == "session_expired"


def test_passkey_offer_skip_and_snooze(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    assert account.http.get("/api/me").json()["passkey_prompt"] is True
    assert account.http.post("/api/passkeys/prompt", json={"action": "skip"}).json() == {
        "passkey_prompt": False
    }
    # "Not now": asked again after 10 sign-ins ...
    for _ in range(9):
        http = sign_in(server, clock, account)
        assert http.get("/api/me").json()["passkey_prompt"] is False
    assert sign_in(server, clock, account).get("/api/me").json()["passkey_prompt"] is True
    # ... or after 7 days.
    account.http = sign_in(server, clock, account)
    account.http.post("/api/passkeys/prompt", json={"action": "skip"})
    clock.advance(7 * 86400 - 100)
    assert sign_in(server, clock, account).get("/api/me").json()["passkey_prompt"] is False
    clock.advance(100)
    http = sign_in(server, clock, account)
    assert http.get("/api/me").json()["passkey_prompt"] is True
    # "Don't show again": 30 days.
    http.post("/api/passkeys/prompt", json={"action": "snooze"})
    clock.advance(29 * 86400)
    assert sign_in(server, clock, account).get("/api/me").json()["passkey_prompt"] is False
    clock.advance(86400)
    http = sign_in(server, clock, account)
    assert http.get("/api/me").json()["passkey_prompt"] is True
    # Once there is a passkey, no more offers.
    register(http, SoftAuthenticator(server.url))
    assert http.get("/api/me").json()["passkey_prompt"] is False
    assert error_of(http.post("/api/passkeys/prompt", json={"action": "later"})) == "invalid_request"


def test_admin_sees_and_deletes_passkeys(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    key = SoftAuthenticator(server.url, aaguid=YUBIKEY_5)
    passkey = register(account.http, key).json()["passkey"]
    assert login(server, key).status_code == 200
    with admin(server) as a:
        users = a.get("/api/admin/users").json()["users"]
        assert users[0]["passkeys"][0]["sign_count"] == 1
        assert users[0]["passkeys"][0]["aaguid"] == passkey["aaguid"]
    with stepped_up(server, clock, enroll(server, clock, ADMIN)) as a:
        assert a.delete(f"/api/admin/users/{EMAIL}/passkeys/{passkey['id']}").json() == {"status": "deleted"}
        assert error_of(a.delete(f"/api/admin/users/{EMAIL}/passkeys/{passkey['id']}")) == "not_found"
    assert error_of(login(server, key, email=None)) == "unknown_credential"
    deleted = [e for e in audit_events(server) if e["event"] == "passkey_deleted"]
    assert deleted[0]["detail"] == {"credential_id": passkey["id"], "by": ADMIN}


def test_flags_of_synced_passkeys_follow_logins(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    key = SoftAuthenticator(server.url, backup=True)
    register(account.http, key)
    assert login(server, key, flags=UP | UV | BE).status_code == 200
    assert account.http.get("/api/passkeys").json()["passkeys"][0]["backed_up"] is False
    assert login(server, key, flags=UP | UV | BE | BS).status_code == 200
    assert account.http.get("/api/passkeys").json()["passkeys"][0]["backed_up"] is True
