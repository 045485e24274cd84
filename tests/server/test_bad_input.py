"""Bad input on every endpoint: each is a 4xx with a JSON error body, never a 500, and nothing is
written (the audit log aside)."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyctl.server import ServerHandle
from keyctl.server.web import STATUS
from tests.server.conftest import EMAIL, FakeClock, admin, client, enroll, error_of, register, snapshot
from tests.server.softauth import SoftAuthenticator, b64url, cbor

POSTS = [
    "/api/signin/password",
    "/api/signin/totp/enroll",
    "/api/signin/totp/enroll/verify",
    "/api/signin/recovery/confirm",
    "/api/signin/totp",
    "/api/signin/recovery",
    "/api/signout",
    "/api/passkeys/prompt",
    "/api/passkeys/register/options",
    "/api/passkeys/register/verify",
    "/api/passkeys/login/options",
    "/api/passkeys/login/verify",
]


@pytest.fixture
def signed_in(server: ServerHandle, clock: FakeClock) -> httpx.Client:
    account = enroll(server, clock)
    register(account.http, SoftAuthenticator(server.url))
    return account.http


def test_malformed_bodies(server: ServerHandle, signed_in: httpx.Client) -> None:
    before = snapshot(server)
    headers = {"Content-Type": "application/json"}
    for path in POSTS:
        for body, status, code in [
            (b"{not json", 400, "invalid_request"),
            (b"[1, 2]", 400, "invalid_request"),
            (b"\xff\xfe", 400, "invalid_request"),
            (b"[" * 100_000, 413, "payload_too_large"),
            (b'{"a": "' + b"x" * 70_000 + b'"}', 413, "payload_too_large"),
        ]:
            response = signed_in.post(path, content=body, headers=headers)
            assert response.status_code == status, (path, body[:20], response.text)
            assert error_of(response) == code
    assert snapshot(server) == before


WRONG = [
    ("/api/signin/password", {"email": 1, "password": "x"}),
    ("/api/signin/password", {"email": EMAIL}),
    ("/api/signin/password", {"email": EMAIL, "password": ["a"]}),
    ("/api/signin/password", {"email": "x" * 400, "password": "x"}),
    ("/api/signin/totp", {"code": 123456}),
    ("/api/passkeys/prompt", {"action": None}),
    ("/api/passkeys/register/options", {"residentKey": "always"}),
    ("/api/passkeys/register/options", {"userVerification": True}),
    ("/api/passkeys/register/options", {"name": "\u0000bad"}),
    ("/api/passkeys/login/options", {"email": {"$ne": ""}}),
    ("/api/passkeys/login/options", {"userVerification": "sometimes"}),
]


def test_wrong_types_and_values(server: ServerHandle, signed_in: httpx.Client) -> None:
    before = snapshot(server)
    for path, body in WRONG:
        response = signed_in.post(path, json=body)
        assert response.status_code == 400, (path, body, response.text)
        assert error_of(response) == "invalid_request"
    assert snapshot(server) == before


def _registration(server: ServerHandle, http: httpx.Client) -> dict[str, object]:
    options = http.post("/api/passkeys/register/options", json={}).json()
    return SoftAuthenticator(server.url).create(options)


def _broken_registrations(good: dict[str, object]) -> list[dict[str, object]]:
    response = good["response"]
    assert isinstance(response, dict)
    client_data = json.loads(base64.urlsafe_b64decode(response["clientDataJSON"] + "=="))
    return [
        {},
        {**good, "response": "nope"},
        {**good, "id": "AAAA"},  # id differs from rawId
        {**good, "rawId": "***"},
        {**good, "response": {**response, "clientDataJSON": b64url(b"not json")}},
        {
            **good,
            "response": {
                **response,
                "clientDataJSON": b64url(json.dumps({**client_data, "challenge": 5}).encode()),
            },
        },
        {**good, "response": {**response, "attestationObject": b64url(b"\xa1\x63abc")}},
        {**good, "response": {**response, "attestationObject": b64url(cbor({"fmt": "none", "attStmt": {}}))}},
        {**good, "response": {**response, "attestationObject": 17}},
        {**good, "response": {**response, "transports": "usb"}},
        {**good, "response": {**response, "transports": ["x" * 100]}},
    ]


def test_malformed_registration_responses(server: ServerHandle, signed_in: httpx.Client) -> None:
    before = snapshot(server)
    for broken in _broken_registrations(_registration(server, signed_in)):
        response = signed_in.post("/api/passkeys/register/verify", json=broken)
        assert 400 <= response.status_code < 500, (broken, response.text)
        assert error_of(response) in ("invalid_request", "session_expired", "verification_failed")
    assert snapshot(server) == before


def test_malformed_authentication_responses(server: ServerHandle, signed_in: httpx.Client) -> None:
    key = SoftAuthenticator(server.url)
    register(signed_in, key)
    http = client(server)
    before = snapshot(server)
    mutations = [
        lambda good, response: {},
        lambda good, response: {**good, "rawId": 12},
        lambda good, response: {**good, "response": {**response, "signature": "%%%"}},
        lambda good, response: {**good, "response": {**response, "authenticatorData": b64url(b"short")}},
        lambda good, response: {**good, "response": {**response, "clientDataJSON": b64url(b"[]")}},
        lambda good, response: {**good, "response": {**response, "userHandle": 3}},
        lambda good, response: {**good, "type": "password"},
    ]
    for mutate in mutations:
        good = key.get(http.post("/api/passkeys/login/options", json={}).json())
        broken = mutate(good, good["response"])
        refused = http.post("/api/passkeys/login/verify", json=broken)
        assert 400 <= refused.status_code < 500, (broken, refused.text)
        assert error_of(refused) in ("invalid_request", "verification_failed"), refused.text
    assert snapshot(server) == before


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
bodies = st.dictionaries(
    st.sampled_from(["id", "rawId", "type", "response", "email", "password", "code", "name", "action"]),
    json_values,
    max_size=5,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(POSTS), body=bodies)
def test_random_json_never_crashes_the_server(
    server: ServerHandle, path: str, body: dict[str, object]
) -> None:
    response = client(server).post(path, json=body)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:  # some random bodies are valid requests (login options with no email)
        assert set(response.json()) == {"error", "message"}
        assert response.json()["error"] in STATUS
        assert STATUS[response.json()["error"]] == response.status_code


def test_foreign_origin_header_is_refused(server: ServerHandle, signed_in: httpx.Client) -> None:
    before = snapshot(server)
    for path in POSTS:
        response = signed_in.post(path, json={}, headers={"Origin": "https://evil.example"})
        assert response.status_code == 403
        assert error_of(response) == "forbidden_origin"
    assert snapshot(server) == before
    same = signed_in.post("/api/passkeys/login/options", json={}, headers={"Origin": server.url})
    assert same.status_code == 200


def test_unknown_routes_and_methods(server: ServerHandle) -> None:
    assert error_of(client(server).get("/api/nothing")) == "not_found"
    assert error_of(client(server).get("/api/signin/password")) == "method_not_allowed"
    with admin(server) as a:
        assert error_of(a.post("/api/admin/users/nobody@example.com/reset-2fa", json={})) == "not_found"
        assert error_of(a.get("/api/admin/users", params={"limit": "0"})) == "invalid_request"
        assert error_of(a.get("/api/admin/audit", params={"after": "-1"})) == "invalid_request"


def test_foreign_origin_cannot_delete_a_passkey(server: ServerHandle, signed_in: httpx.Client) -> None:
    passkey = signed_in.get("/api/passkeys").json()["passkeys"][0]
    response = signed_in.delete(f"/api/passkeys/{passkey['id']}", headers={"Origin": "https://evil.example"})
    assert error_of(response) == "forbidden_origin"
    assert len(signed_in.get("/api/passkeys").json()["passkeys"]) == 1
