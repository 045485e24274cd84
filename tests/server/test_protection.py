"""Attack protection and sessions: brute-force blocks and unblock links, the per-IP rate limit, cookie
attributes, idle and absolute session expiry, logout."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from keyctl.server import ServerHandle, start
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
    http_client,
    sign_in,
    sql,
    totp_code,
)


def wrong_password(http: httpx.Client, email: str = EMAIL) -> httpx.Response:
    return http.post("/api/signin/password", json={"email": email, "password": "not the password!"})


def outbox(server: ServerHandle) -> list[dict[str, str]]:
    if not server.outbox_path.exists():
        return []
    return [json.loads(line) for line in server.outbox_path.read_text().splitlines()]


def test_five_failures_block_the_ip_for_that_account_until_the_link_is_used(server: ServerHandle) -> None:
    create_user(server)
    http = client(server)
    for _ in range(5):
        assert error_of(wrong_password(http)) == "invalid_credentials"
    assert outbox(server)[0]["to"] == EMAIL
    blocked = http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    assert blocked.status_code == 403
    assert error_of(blocked) == "blocked"
    # Other accounts from the same IP are not blocked.
    create_user(server, "bob@example.com")
    assert (
        http.post("/api/signin/password", json={"email": "bob@example.com", "password": PASSWORD}).status_code
        == 200
    )
    link = outbox(server)[0]["link"]
    assert link.startswith(server.url + "/unblock/")
    page = client(server).get(link)
    assert page.status_code == 200
    assert "Unblocked" in page.text
    assert http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD}).status_code == 200
    assert client(server).get(link).status_code == 404  # a link works once
    events = [e["event"] for e in audit_events(server)]
    assert "signin_blocked" in events
    assert "unblocked" in events


def test_failed_totp_codes_count_toward_the_block(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    http = client(server)
    http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    for _ in range(5):
        assert error_of(http.post("/api/signin/totp", json={"code": "000000"})) == "invalid_code"
    clock.advance(30)
    assert (
        error_of(http.post("/api/signin/totp", json={"code": totp_code(account.secret, clock())}))
        == "blocked"
    )


def test_unknown_accounts_block_the_same_way(server: ServerHandle) -> None:
    http = client(server)
    for _ in range(5):
        assert error_of(wrong_password(http, "ghost@example.com")) == "invalid_credentials"
    assert error_of(wrong_password(http, "ghost@example.com")) == "blocked"
    assert outbox(server) == []  # nobody to write to


def test_admin_lists_and_lifts_blocks(server: ServerHandle) -> None:
    create_user(server)
    http = client(server)
    for _ in range(5):
        wrong_password(http)
    with admin(server) as a:
        blocks = a.get("/api/admin/blocks").json()["blocks"]
        assert [(b["ip"], b["email"]) for b in blocks] == [("127.0.0.1", EMAIL)]
        assert a.post("/api/admin/unblock", json={"ip": "127.0.0.1"}).json() == {"unblocked": 1}
        assert a.get("/api/admin/blocks").json()["blocks"] == []
    assert http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD}).status_code == 200


def test_a_successful_sign_in_resets_the_failure_count(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    http = client(server)
    for _ in range(4):
        wrong_password(http)
    sign_in(server, clock, account)
    for _ in range(4):
        assert error_of(wrong_password(http)) == "invalid_credentials"


def test_passkey_login_is_not_blocked_by_password_guessing(server: ServerHandle, clock: FakeClock) -> None:
    from tests.server.conftest import register
    from tests.server.softauth import SoftAuthenticator

    account = enroll(server, clock)
    key = SoftAuthenticator(server.url)
    register(account.http, key)
    http = client(server)
    for _ in range(5):
        wrong_password(http)
    options = http.post("/api/passkeys/login/options", json={"email": EMAIL}).json()
    assert http.post("/api/passkeys/login/verify", json=key.get(options)).status_code == 200


def test_rate_limit_per_ip_on_auth_endpoints(db_target: Path | str, clock: FakeClock) -> None:
    with start(db_target, clock=clock, rate_limit=5) as server:
        http = client(server)
        for _ in range(5):
            assert http.post("/api/passkeys/login/options", json={}).status_code == 200
        limited = http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
        assert limited.status_code == 429
        assert error_of(limited) == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert http.get("/api/me").status_code == 401  # not an auth endpoint: not limited
        clock.advance(60)
        assert http.post("/api/passkeys/login/options", json={}).status_code == 200


def test_session_cookie_attributes(server: ServerHandle, clock: FakeClock) -> None:
    create_user(server)
    response = client(server).post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith("keyctl_session=")
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "path=/" in cookie
    assert "secure" not in cookie


def test_cookie_is_secure_behind_https(db_target: Path | str, clock: FakeClock) -> None:
    # Behind a TLS proxy: browsers use the https origin, the proxy talks to the loopback address.
    with start(db_target, clock=clock, origin="https://login.localhost") as server:
        assert server.url == "https://login.localhost"
        server.create_user(EMAIL, PASSWORD)
        response = http_client(server.local_url).post(
            "/api/signin/password", json={"email": EMAIL, "password": PASSWORD}
        )
        assert "; secure" in response.headers["set-cookie"].lower()


def test_idle_sessions_end_after_24_hours(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    clock.advance(23 * 3600)
    assert account.http.get("/api/me").status_code == 200  # activity restarts the idle timer
    clock.advance(23 * 3600)
    assert account.http.get("/api/me").status_code == 200
    clock.advance(24 * 3600 + 1)
    expired = account.http.get("/api/me")
    assert expired.status_code == 401
    assert error_of(expired) == "session_expired"


def test_sessions_end_after_7_days_even_when_active(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    for _ in range(8):  # 160 h, never idle for long
        clock.advance(20 * 3600)
        assert account.http.get("/api/me").status_code == 200
    clock.advance(20 * 3600)  # 180 h > 7 days
    assert error_of(account.http.get("/api/me")) == "session_expired"


def test_logout_ends_the_session(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    token = account.http.cookies["keyctl_session"]
    response = account.http.post("/api/signout", json={})
    assert response.json() == {"status": "signed_out"}
    assert (
        'keyctl_session=""' in response.headers["set-cookie"]
        or "max-age=0" in response.headers["set-cookie"].lower()
    )
    replay = client(server)
    replay.cookies.set("keyctl_session", token)
    assert error_of(replay.get("/api/me")) == "not_signed_in"
    assert error_of(replay.post("/api/signout", json={})) == "not_signed_in"


def test_rate_limit_table_forgets_idle_addresses(db_target: Path | str, clock: FakeClock) -> None:
    """A long-running server must not keep one row per address it ever saw."""
    with start(db_target, clock=clock, rate_limit=5) as server:
        for n in range(1000):
            server.policy.check_rate(f"10.0.{n // 250}.{n % 250}")
        assert sql(server, "SELECT count(DISTINCT ip) FROM rate_hits") == [(1000,)]
        clock.advance(61)
        server.policy.check_rate("127.0.0.1")
        assert sql(server, "SELECT DISTINCT ip FROM rate_hits") == [("127.0.0.1",)]
