"""What a hostile tester broke (issue #14): input that made a 500, keys that could never verify, two-factor
races, and a passkey sign-in that did not reset the failed-attempt count."""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from keyctl.server import ServerHandle, passwords
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
    totp_code,
)
from tests.server.softauth import UP, UV, Credential, SoftAuthenticator, cbor

SURROGATE = "\ud800"
# Arabic-Indic, full-width, mathematical bold digits: Python's \d and str.isdigit() accept them all.
UNICODE_DIGITS = [
    "\u0661\u0662\u0663\u0664\u0665\u0666",
    "\uff11\uff12\uff13\uff14\uff15\uff16",
    "\U0001d7cf\U0001d7d0\U0001d7d1\U0001d7d2\U0001d7d3\U0001d7d4",
    "\u0660" * 6,
]


def post_raw(http: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST a JSON body as Python's json writes it: a lone surrogate becomes the valid escape "\\ud800"."""
    return http.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})


@pytest.fixture
def account_http(server: ServerHandle, clock: FakeClock) -> httpx.Client:
    return enroll(server, clock).http


def test_lone_surrogates_in_every_string_field_are_invalid_requests(
    server: ServerHandle, clock: FakeClock, account_http: httpx.Client
) -> None:
    pending = client(server)
    step = pending.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    assert step.json()["status"] == "totp_required"
    cases: list[tuple[httpx.Client, str, dict[str, Any]]] = [
        (client(server), "/api/signin/password", {"email": SURROGATE, "password": PASSWORD}),
        (client(server), "/api/signin/password", {"email": EMAIL, "password": "pass" + SURROGATE * 12}),
        (client(server), "/api/invites/accept", {"token": SURROGATE, "password": PASSWORD}),
        (client(server), "/api/invites/accept", {"token": "abc", "password": SURROGATE * 12}),
        (pending, "/api/signin/totp", {"code": SURROGATE * 6}),
        (pending, "/api/signin/recovery", {"recovery_code": SURROGATE}),
        (client(server), "/api/passkeys/login/options", {"email": SURROGATE}),
        (account_http, "/api/passkeys/register/options", {"name": SURROGATE}),
        (account_http, "/api/passkeys/prompt", {"action": SURROGATE}),
        (admin(server), "/api/admin/users", {"email": SURROGATE + "@example.com", "password": PASSWORD}),
        (admin(server), "/api/admin/users", {"email": "bob@example.com", "password": SURROGATE * 12}),
        (admin(server), "/api/admin/invites", {"email": SURROGATE}),
        (admin(server), "/api/admin/unblock", {"ip": SURROGATE}),
        (admin(server), "/api/admin/unblock", {"ip": "127.0.0.1", "email": SURROGATE}),
    ]
    before = snapshot(server)
    for http, path, body in cases:
        response = post_raw(http, path, body)
        assert response.status_code == 400, (path, body, response.text)
        assert error_of(response) == "invalid_request", (path, response.text)
        assert "not valid Unicode" in response.json()["message"]
    assert snapshot(server) == before


def test_non_ascii_digits_are_wrong_codes(server: ServerHandle, clock: FakeClock) -> None:
    create_user(server)
    http = client(server)
    http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    http.post("/api/signin/totp/enroll", json={})
    for code in UNICODE_DIGITS[:2]:
        response = http.post("/api/signin/totp/enroll/verify", json={"code": code})
        assert response.status_code == 401, response.text
        assert error_of(response) == "invalid_code"
    with admin(server) as a:
        a.post("/api/admin/unblock", json={"ip": "127.0.0.1"})
    account = enroll(server, clock, "bob@example.com")
    clock.advance(30)
    http = client(server)
    http.post("/api/signin/password", json={"email": account.email, "password": PASSWORD})
    for code in UNICODE_DIGITS[2:]:
        response = http.post("/api/signin/totp", json={"code": code})
        assert response.status_code == 401, response.text
        assert error_of(response) == "invalid_code"
    done = http.post("/api/signin/totp", json={"code": totp_code(account.secret, clock())})
    assert done.status_code == 200, done.text


@pytest.mark.parametrize("value", ["\u00b2", "\u0661", "\uff19", "1\u00b2", "9" * 5000, " 1", "+1", "1_0"])
def test_query_numbers_are_ascii_digits_only(server: ServerHandle, value: str) -> None:
    with admin(server) as a:
        for path, key in (
            ("/api/admin/users", "limit"),
            ("/api/admin/users", "cursor"),
            ("/api/admin/audit", "after"),
            ("/api/admin/audit", "limit"),
        ):
            response = a.get(path, params={key: value})
            assert response.status_code == 400, (path, key, value, response.text)
            assert error_of(response) == "invalid_request"
        assert a.get("/api/admin/users", params={"limit": "7", "cursor": "0"}).status_code == 200


def _register_refused(server: ServerHandle, http: httpx.Client, **crafted: Any) -> httpx.Response:
    options = http.post("/api/passkeys/register/options", json={}).json()
    before = snapshot(server)
    response = http.post(
        "/api/passkeys/register/verify", json=SoftAuthenticator(server.url).create(options, **crafted)
    )
    assert snapshot(server) == before
    assert http.get("/api/passkeys").json() == {"passkeys": []}
    return response


def test_registration_without_attested_credential_data_is_refused(
    server: ServerHandle, account_http: httpx.Client
) -> None:
    response = _register_refused(server, account_http, flags=UP | UV)
    assert response.status_code == 400, response.text
    assert error_of(response) == "verification_failed"  # as the README's error table says


@pytest.mark.parametrize(
    "cose_key",
    [
        {1: 2, 3: -999, -1: 1, -2: bytes(32), -3: bytes(32)},  # an algorithm nobody offered
        {1: 2, 3: -7, -1: 1},  # ES256 without x and y
        {1: 2, 3: -7, -1: 1, -2: b"\x01" * 32, -3: b"\x02" * 32},  # a point off the curve
        {1: 1, 3: -8, -1: 6, -2: b"\x01" * 5},  # an Ed25519 key of 5 bytes
        {1: 3, 3: -257},  # RS256 without n and e
    ],
    ids=["alg-999", "es256-no-xy", "off-curve", "short-ed25519", "rs256-no-n"],
)
def test_registration_refuses_keys_that_can_never_verify(
    server: ServerHandle, account_http: httpx.Client, cose_key: dict[int, Any]
) -> None:
    response = _register_refused(server, account_http, cose_key=cose_key)
    assert response.status_code == 400, response.text
    assert error_of(response) == "verification_failed"
    assert audit_events(server)[-1]["event"] == "passkey_register_refused"
    good = register(account_http, SoftAuthenticator(server.url))  # the account still registers a real key
    assert good.status_code == 200, good.text


def test_login_with_a_stored_key_that_cannot_verify_is_a_verification_failure(
    server: ServerHandle, account_http: httpx.Client
) -> None:
    """A database from before registration checked keys may hold one: the login is refused, not a 500."""
    credential_id = os.urandom(16)
    broken = cbor({1: 2, 3: -7, -1: 1})
    credential_data = bytes(16) + struct.pack(">H", len(credential_id)) + credential_id + broken
    ((user_id, handle),) = sql(server, "SELECT id, user_handle FROM users WHERE email = ?", (EMAIL,))
    sql(
        server,
        "INSERT INTO passkeys (credential_id, user_id, name, credential_data, aaguid, transports, "
        "backup_eligible, backed_up, sign_count, created_at) "
        "VALUES (?, ?, 'old', ?, ?, '[]', 0, 0, 0, 0) RETURNING name",
        (credential_id, user_id, credential_data, "00000000-0000-0000-0000-000000000000"),
    )
    key = SoftAuthenticator(server.url)
    key.credentials[credential_id] = Credential(
        credential_id, ec.generate_private_key(ec.SECP256R1()), "localhost", handle
    )
    http = client(server)
    options = http.post("/api/passkeys/login/options", json={"email": EMAIL}).json()
    response = http.post("/api/passkeys/login/verify", json=key.get(options))
    assert response.status_code == 400, response.text
    assert error_of(response) == "verification_failed"
    assert http.get("/api/me").status_code == 401


def _to_recovery_confirmation(server: ServerHandle, clock: FakeClock) -> tuple[httpx.Client, str, str]:
    http = client(server)
    step = http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    assert step.json()["status"] == "totp_enrollment_required", step.text
    secret = http.post("/api/signin/totp/enroll", json={}).json()["secret"]
    verified = http.post("/api/signin/totp/enroll/verify", json={"code": totp_code(secret, clock())})
    assert verified.status_code == 200, verified.text
    return http, secret, verified.json()["recovery_code"]


def test_an_older_pending_enrollment_cannot_replace_a_finished_one(
    server: ServerHandle, clock: FakeClock
) -> None:
    create_user(server)
    late, _, late_recovery = _to_recovery_confirmation(server, clock)  # the older sign-in, left waiting
    stale = client(server)  # an even older one, still at the enrollment step
    stale.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    first, secret, recovery = _to_recovery_confirmation(server, clock)
    assert first.post("/api/signin/recovery/confirm", json={"recovery_code": recovery}).status_code == 200

    before = snapshot(server)
    replaced = late.post("/api/signin/recovery/confirm", json={"recovery_code": late_recovery})
    assert error_of(replaced) == "session_expired", replaced.text
    assert error_of(stale.post("/api/signin/totp/enroll", json={})) == "session_expired"
    assert (
        error_of(stale.post("/api/signin/totp/enroll/verify", json={"code": "123456"})) == "session_expired"
    )
    assert snapshot(server) == before

    clock.advance(30)  # the first enrollment's secret and recovery code are the account's
    http = client(server)
    http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    assert http.post("/api/signin/totp", json={"code": totp_code(secret, clock())}).status_code == 200
    http = client(server)
    http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    assert http.post("/api/signin/recovery", json={"recovery_code": recovery}).status_code == 200


@pytest.mark.parametrize("second_step", ["/api/signin/totp", "/api/signin/recovery"])
def test_admin_2fa_reset_during_the_password_step(
    server: ServerHandle, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, second_step: str
) -> None:
    """The reset lands while the password hash is being checked (outside the database lock)."""
    account = enroll(server, clock)
    root = stepped_up(server, clock, enroll(server, clock, ADMIN))
    verify = passwords.verify_password

    def verify_then_reset(password: str, stored: str) -> bool:
        ok = verify(password, stored)
        with root as a:
            assert a.post(f"/api/admin/users/{EMAIL}/reset-2fa", json={}).status_code == 200
        return ok

    monkeypatch.setattr(passwords, "verify_password", verify_then_reset)
    clock.advance(30)
    http = client(server)
    step = http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    # The step re-read the account after the hash: it saw the reset and asks for enrollment.
    assert step.json() == {"status": "totp_enrollment_required"}, step.text
    body = {"code": totp_code(account.secret, clock()), "recovery_code": account.recovery_code}
    response = http.post(second_step, json=body)
    assert 400 <= response.status_code < 500, response.text
    assert error_of(response) in ("totp_enrollment_required", "session_expired")
    assert http.get("/api/me").status_code == 401
    monkeypatch.setattr(passwords, "verify_password", verify)
    fresh = client(server)
    again = fresh.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    assert again.json() == {"status": "totp_enrollment_required"}


def test_a_passkey_sign_in_resets_the_failed_attempt_count(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    key = SoftAuthenticator(server.url)
    register(account.http, key)
    http = client(server)

    def wrong() -> str:
        return error_of(
            http.post("/api/signin/password", json={"email": EMAIL, "password": "not the password!"})
        )

    assert [wrong() for _ in range(4)] == ["invalid_credentials"] * 4
    options = http.post("/api/passkeys/login/options", json={"email": EMAIL}).json()
    assert http.post("/api/passkeys/login/verify", json=key.get(options)).status_code == 200
    assert [wrong() for _ in range(4)] == ["invalid_credentials"] * 4  # the count started again
    step = client(server).post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    assert step.json() == {"status": "totp_required"}, step.text
    assert wrong() == "invalid_credentials"
    assert wrong() == "blocked"
