"""The admin API: bearer token, paginated users with passkey metadata, and the append-only audit log."""

from __future__ import annotations

import json

import pytest

from keyctl.server import ServerHandle
from tests.server.conftest import (
    EMAIL,
    PASSWORD,
    FakeClock,
    admin,
    audit_events,
    client,
    enroll,
    error_of,
    register,
    snapshot,
    sql,
)
from tests.server.softauth import SoftAuthenticator

ADMIN_CALLS = [
    ("GET", "/api/admin/users"),
    ("POST", "/api/admin/users"),
    ("DELETE", f"/api/admin/users/{EMAIL}/passkeys/AAAA"),
    ("POST", f"/api/admin/users/{EMAIL}/reset-2fa"),
    ("GET", "/api/admin/blocks"),
    ("POST", "/api/admin/unblock"),
    ("GET", "/api/admin/audit"),
]


def test_admin_api_needs_the_token(server: ServerHandle) -> None:
    for method, path in ADMIN_CALLS:
        for authorization in (None, "Bearer wrong", "Basic abc", "Bearer", f"Bearer {server.admin_token}x"):
            headers = {"Authorization": authorization} if authorization else {}
            response = client(server).request(
                method, path, headers=headers, json={} if method == "POST" else None
            )
            assert response.status_code == 401, (method, path, authorization)
            assert error_of(response) == "unauthorized"


def test_users_are_listed_page_by_page_with_passkey_metadata(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    register(account.http, SoftAuthenticator(server.url), name="Desk key")
    for n in range(4):
        server.create_user(f"user{n}@example.com", PASSWORD)
    seen: list[dict[str, object]] = []
    cursor: str | None = None
    with admin(server) as a:
        pages = 0
        while True:
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = a.get("/api/admin/users", params=params).json()
            seen += page["users"]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert pages == 3
    assert [u["email"] for u in seen] == [EMAIL] + [f"user{n}@example.com" for n in range(4)]
    alice = seen[0]
    assert alice["totp_enrolled"] is True
    assert alice["last_sign_in_at"] is not None
    passkeys = alice["passkeys"]
    assert isinstance(passkeys, list)
    assert set(passkeys[0]) == {
        "id",
        "name",
        "created_at",
        "last_used_at",
        "aaguid",
        "transports",
        "backup_eligible",
        "backed_up",
        "sign_count",
        "attestation_format",
    }
    assert passkeys[0]["name"] == "Desk key"
    assert seen[1]["totp_enrolled"] is False


def test_audit_log_records_security_events_and_pages(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    client(server).post("/api/signin/password", json={"email": EMAIL, "password": "wrong password!"})
    register(account.http, SoftAuthenticator(server.url))
    events = audit_events(server)
    names = [e["event"] for e in events]
    for expected in (
        "user_created",
        "signin_password_ok",
        "totp_enrolled",
        "signin_ok",
        "signin_failed",
        "passkey_registered",
    ):
        assert expected in names
    failed = events[names.index("signin_failed")]
    assert failed["email"] == EMAIL
    assert failed["ip"] == "127.0.0.1"
    assert failed["detail"] == {"reason": "invalid_credentials"}
    with admin(server) as a:
        first = a.get("/api/admin/audit", params={"limit": "2"}).json()
        assert [e["id"] for e in first["events"]] == [events[0]["id"], events[1]["id"]]
        rest = a.get("/api/admin/audit", params={"after": str(first["next_after"]), "limit": "1000"}).json()
        assert [e["id"] for e in first["events"] + rest["events"]] == [e["id"] for e in events]
        assert rest["next_after"] is None


def test_audit_log_is_append_only(server: ServerHandle, clock: FakeClock) -> None:
    enroll(server, clock)
    for statement in ("UPDATE audit SET event = 'nothing'", "DELETE FROM audit"):
        with pytest.raises(Exception, match="append-only"):
            sql(server, statement)


def test_admin_creates_accounts_with_the_password_rules(server: ServerHandle) -> None:
    with admin(server) as a:
        created = a.post("/api/admin/users", json={"email": " Carol@Example.com ", "password": PASSWORD})
        assert created.status_code == 201
        assert created.json()["email"] == "carol@example.com"
        assert error_of(a.post("/api/admin/users", json={"email": "no-at-sign", "password": PASSWORD})) == (
            "invalid_request"
        )
    assert client(server).post(
        "/api/signin/password", json={"email": "carol@example.com", "password": PASSWORD}
    ).json() == {"status": "totp_enrollment_required"}


def test_invite_link_creates_an_account_once(server: ServerHandle, clock: FakeClock) -> None:
    with admin(server) as a:
        invite = a.post("/api/admin/invites", json={"email": "Dana@Example.com"})
    assert invite.status_code == 201
    link = invite.json()["invite_url"]
    assert link.startswith(server.url + "/invite/")
    mailed = [json.loads(line) for line in server.outbox_path.read_text().splitlines()]
    assert mailed[-1]["to"] == "dana@example.com"
    assert mailed[-1]["link"] == link
    http = client(server)
    assert "Choose a password" in http.get(link).text
    token = link.rsplit("/", 1)[1]
    weak = http.post("/api/invites/accept", json={"token": token, "password": "password"})
    assert error_of(weak) == "weak_password"
    created = http.post("/api/invites/accept", json={"token": token, "password": PASSWORD})
    assert created.status_code == 201
    assert created.json() == {"status": "created", "email": "dana@example.com"}
    assert (
        error_of(http.post("/api/invites/accept", json={"token": token, "password": PASSWORD})) == "not_found"
    )
    signin = http.post("/api/signin/password", json={"email": "dana@example.com", "password": PASSWORD})
    assert signin.json() == {"status": "totp_enrollment_required"}
    with admin(server) as a:
        assert error_of(a.post("/api/admin/invites", json={"email": "dana@example.com"})) == "user_exists"


def test_invite_links_expire_after_7_days(server: ServerHandle, clock: FakeClock) -> None:
    with admin(server) as a:
        link = a.post("/api/admin/invites", json={"email": "erin@example.com"}).json()["invite_url"]
    clock.advance(7 * 86400 + 1)
    expired = client(server).post(
        "/api/invites/accept", json={"token": link.rsplit("/", 1)[1], "password": PASSWORD}
    )
    assert error_of(expired) == "not_found"
    assert snapshot(server)["users"] == []
