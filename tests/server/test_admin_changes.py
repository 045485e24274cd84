"""The admin API's changes to accounts, invites and passkeys: deleting an account, listing and revoking
invites, renaming a user's passkey. Each is audited, and each refusal is the documented error shape with
nothing written. Over HTTP against the real server, on both storage backends."""

from __future__ import annotations

import httpx

from keyctl.server import ServerHandle
from tests.server.conftest import (
    ADMIN,
    EMAIL,
    PASSWORD,
    FakeClock,
    admin,
    audit_events,
    client,
    create_user,
    enroll,
    error_of,
    register,
    snapshot,
    sql,
    stepped_up,
)
from tests.server.softauth import SoftAuthenticator

NEW_CALLS = [
    ("DELETE", f"/api/admin/users/{EMAIL}"),
    ("GET", "/api/admin/invites"),
    ("DELETE", "/api/admin/invites/abc"),
    ("PATCH", f"/api/admin/users/{EMAIL}/passkeys/AAAA"),
]


def test_the_new_endpoints_need_the_token(server: ServerHandle) -> None:
    create_user(server)
    before = snapshot(server)
    for method, path in NEW_CALLS:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            answer = client(server).request(
                method, path, headers=headers, json={"name": "x"} if method == "PATCH" else None
            )
            assert answer.status_code == 401, (method, path)
            assert error_of(answer) == "unauthorized"
    assert snapshot(server) == before


def invite(server: ServerHandle, email: str) -> str:
    """The token of a new invite link."""
    with admin(server) as a:
        answer = a.post("/api/admin/invites", json={"email": email})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["invite_url"]).rsplit("/", 1)[1]


def accept(server: ServerHandle, token: str) -> httpx.Response:
    return client(server).post("/api/invites/accept", json={"token": token, "password": PASSWORD})


def test_deleting_an_account_ends_its_sessions_passkeys_and_invites(
    server: ServerHandle, clock: FakeClock
) -> None:
    stale_link = invite(server, EMAIL)  # created before the account was added directly
    account = enroll(server, clock)
    soft = SoftAuthenticator(server.url)
    assert register(account.http, soft).status_code == 200
    create_user(server, "bob@example.com")
    root = enroll(server, clock, ADMIN)
    with stepped_up(server, clock, root) as a:
        deleted = a.delete(f"/api/admin/users/{EMAIL.upper()}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json() == {"status": "deleted"}
        assert [u["email"] for u in a.get("/api/admin/users").json()["users"]] == ["bob@example.com", ADMIN]
    assert error_of(account.http.get("/api/me")) == "not_signed_in"
    options = client(server).post("/api/passkeys/login/options", json={}).json()
    login = client(server).post("/api/passkeys/login/verify", json=soft.get(options))
    assert error_of(login) == "unknown_credential"
    assert error_of(accept(server, stale_link)) == "not_found"
    assert sql(server, "SELECT COUNT(*) FROM passkeys") == [(0,)]
    event = [e for e in audit_events(server) if e["event"] == "user_deleted"]
    assert [(e["email"], e["detail"]) for e in event] == [(EMAIL, {"by": ADMIN, "passkeys": 1})]
    # The address is free again.
    create_user(server, EMAIL)


def test_deleting_an_unknown_account_is_not_found_and_writes_nothing(server: ServerHandle) -> None:
    create_user(server)
    before = snapshot(server)
    events = len(audit_events(server))
    with admin(server) as a:
        missing = a.delete("/api/admin/users/nobody@example.com")
    assert missing.status_code == 404
    assert error_of(missing) == "not_found"
    assert "nobody@example.com" in missing.json()["message"]
    assert snapshot(server) == before
    assert len(audit_events(server)) == events


def test_invites_are_listed_without_their_links_and_revoked_one_by_one(
    server: ServerHandle, clock: FakeClock
) -> None:
    first = invite(server, "Dana@Example.com")
    clock.advance(60)
    second = invite(server, "dana@example.com")
    clock.advance(60)  # invites of the same second are listed in no particular order
    other = invite(server, "erin@example.com")
    with admin(server) as a:
        listed = a.get("/api/admin/invites")
        assert listed.status_code == 200
        invites = listed.json()["invites"]
        assert [i["email"] for i in invites] == ["dana@example.com", "dana@example.com", "erin@example.com"]
        assert all(set(i) == {"id", "email", "created_at", "expires_at"} for i in invites)
        assert len({i["id"] for i in invites}) == 3
        for token in (first, second, other):
            assert token not in listed.text  # the list names invites; it never hands out their links
        assert invites[0]["expires_at"] > invites[0]["created_at"]
        revoked = a.delete(f"/api/admin/invites/{invites[0]['id']}")
        assert revoked.status_code == 200, revoked.text
        assert revoked.json() == {"status": "revoked", "invite": invites[0]}
        again = a.delete(f"/api/admin/invites/{invites[0]['id']}")
        assert again.status_code == 404
        assert error_of(again) == "not_found"
        assert [i["id"] for i in a.get("/api/admin/invites").json()["invites"]] == [
            invites[1]["id"],
            invites[2]["id"],
        ]
    assert error_of(accept(server, first)) == "not_found"
    assert accept(server, second).status_code == 201  # the other invite of the same address still works
    events = [e for e in audit_events(server) if e["event"] == "invite_revoked"]
    assert [(e["email"], e["detail"]) for e in events] == [
        ("dana@example.com", {"by": "admin", "invite_id": invites[0]["id"]})
    ]


def test_expired_invites_are_not_listed_nor_revocable(server: ServerHandle, clock: FakeClock) -> None:
    invite(server, "erin@example.com")
    with admin(server) as a:
        [pending] = a.get("/api/admin/invites").json()["invites"]
        clock.advance(7 * 86400 + 1)
        assert a.get("/api/admin/invites").json() == {"invites": []}
        assert error_of(a.delete(f"/api/admin/invites/{pending['id']}")) == "not_found"
        assert error_of(a.delete("/api/admin/invites/not-an-id")) == "not_found"
    assert sql(server, "SELECT COUNT(*) FROM invites") == [(1,)]


def test_an_admin_renames_a_users_passkey(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    passkey = register(account.http, SoftAuthenticator(server.url), name="Desk key").json()["passkey"]
    bob = enroll(server, clock, "bob@example.com")
    bobs = register(bob.http, SoftAuthenticator(server.url), name="Bob's key").json()["passkey"]
    path = f"/api/admin/users/{EMAIL}/passkeys/{passkey['id']}"
    with admin(server) as a:
        renamed = a.patch(path, json={"name": "  Spare key "})
        assert renamed.status_code == 200, renamed.text
        assert renamed.json() == {**passkey, "name": "Spare key"}
        before = snapshot(server)
        for body in ({"name": ""}, {"name": "x" * 65}, {"name": "tab\there"}, {}, {"name": 3}):
            assert error_of(a.patch(path, json=body)) == "invalid_request", body
        assert error_of(a.patch(path, content=b'{"name": "x"}')) == "unsupported_media_type"
        # Bob's passkey under Alice's address, an unknown address, an unknown id: not found.
        for wrong in (
            f"/api/admin/users/{EMAIL}/passkeys/{bobs['id']}",
            f"/api/admin/users/nobody@example.com/passkeys/{passkey['id']}",
            f"/api/admin/users/{EMAIL}/passkeys/AAAA",
        ):
            answer = a.patch(wrong, json={"name": "Stolen"})
            assert answer.status_code == 404, wrong
            assert error_of(answer) == "not_found"
        assert snapshot(server) == before
    assert [p["name"] for p in account.http.get("/api/passkeys").json()["passkeys"]] == ["Spare key"]
    events = [e for e in audit_events(server) if e["event"] == "passkey_renamed"]
    assert [(e["email"], e["detail"]) for e in events] == [
        (EMAIL, {"by": "admin", "credential_id": passkey["id"], "name": "Spare key"})
    ]
