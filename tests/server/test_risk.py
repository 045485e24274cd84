"""Risk assessment (#19 item 3): a correct password from an address the account never completed a
sign-in from is blocked when the account just had failed sign-ins, or when the address tried many
accounts; admins get an alert in the outbox and a list; a passkey sign-in is not assessed. Addresses
come from X-Forwarded-For through a trusted proxy (the loopback client), the clock is injected."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keyctl.server import ServerHandle, start
from tests.server.conftest import (
    EMAIL,
    PASSWORD,
    FakeClock,
    admin,
    audit_events,
    enroll,
    error_of,
    http_client,
    register,
    snapshot,
)
from tests.server.softauth import SoftAuthenticator

NEW = "198.51.100.9"
ATTACKER = "203.0.113.66"
ADMINS = ("sec@example.com", "ops@example.com")


@pytest.fixture
def server(db_target: Path | str, clock: FakeClock) -> Iterator[ServerHandle]:
    with start(
        db_target, clock=clock, rate_limit=100_000, trusted_proxies=("127.0.0.1",), admin_emails=ADMINS
    ) as handle:
        yield handle


def from_ip(server: ServerHandle, ip: str) -> httpx.Client:
    return http_client(server.url, headers={"X-Forwarded-For": ip, "User-Agent": "curl/8.0 test"})


def password(http: httpx.Client, email: str = EMAIL, secret: str = PASSWORD) -> httpx.Response:
    return http.post("/api/signin/password", json={"email": email, "password": secret})


def alerts(server: ServerHandle) -> list[dict[str, str]]:
    if not server.outbox_path.exists():
        return []
    mails = [json.loads(line) for line in server.outbox_path.read_text().splitlines()]
    return [m for m in mails if m["subject"].startswith("Risky sign-in blocked")]


def test_a_new_address_right_after_failures_is_blocked_and_admins_alerted(
    server: ServerHandle, clock: FakeClock
) -> None:
    account = enroll(server, clock)  # from 127.0.0.1: a known address from now on
    key = SoftAuthenticator(server.url)
    register(account.http, key)
    for _ in range(3):
        assert (
            error_of(password(from_ip(server, ATTACKER), secret="wrong password 1234"))
            == "invalid_credentials"
        )
    before = snapshot(server)
    risky = from_ip(server, NEW)
    blocked = password(risky)
    assert blocked.status_code == 403
    assert error_of(blocked) == "risk_blocked"
    assert "Sign-in blocked: an unusual sign-in from a new location" in blocked.json()["message"]
    assert "keyctl_session" not in risky.cookies
    assert snapshot(server) == before  # the attempt is blocked, the account is not
    assert [(a["to"], a["subject"]) for a in alerts(server)] == [
        (to, f"Risky sign-in blocked: {EMAIL} from {NEW}") for to in ADMINS
    ]
    with admin(server) as a:
        listed = a.get("/api/admin/risk-blocks").json()["risk_blocks"]
    assert [(b["email"], b["ip"], b["user_agent"], b["reason"]) for b in listed] == [
        (EMAIL, NEW, "curl/8.0 test", "new_location_after_failures")
    ]
    # A known address is not assessed; nor is a passkey sign-in, which makes its address known.
    assert password(from_ip(server, "127.0.0.1")).json() == {"status": "totp_required"}
    options = risky.post("/api/passkeys/login/options", json={}).json()
    assert risky.post("/api/passkeys/login/verify", json=key.get(options)).status_code == 200
    assert password(from_ip(server, NEW)).json() == {"status": "totp_required"}
    # The failures age out of the window: a new address is fine again.
    clock.advance(3601)
    assert password(from_ip(server, "192.0.2.44")).json() == {"status": "totp_required"}
    assert len(alerts(server)) == 2


def test_an_address_trying_many_accounts_is_blocked_at_a_new_account(
    server: ServerHandle, clock: FakeClock
) -> None:
    for n in range(4):
        server.create_user(f"user{n}@example.com", PASSWORD)
    enroll(server, clock, "user4@example.com")  # signed in before, from 127.0.0.1
    http = from_ip(server, ATTACKER)
    for n in range(3):
        assert (
            error_of(password(http, f"user{n}@example.com", "wrong password 1234")) == "invalid_credentials"
        )
    assert password(http, "user3@example.com").json() == {"status": "totp_enrollment_required"}  # 4 accounts
    blocked = password(http, "user4@example.com")  # the 5th account from this address within the hour
    assert error_of(blocked) == "risk_blocked"
    events = [e for e in audit_events(server) if e["event"] == "risk_blocked"]
    assert [(e["email"], e["ip"], e["detail"]["reason"]) for e in events] == [
        ("user4@example.com", ATTACKER, "new_location_many_accounts")
    ]


def test_a_new_address_without_a_risk_condition_signs_in(server: ServerHandle, clock: FakeClock) -> None:
    enroll(server, clock)
    assert password(from_ip(server, NEW)).json() == {"status": "totp_required"}
    assert alerts(server) == []


def test_an_account_without_a_completed_sign_in_is_not_assessed(
    server: ServerHandle, clock: FakeClock
) -> None:
    server.create_user(EMAIL, PASSWORD)
    for _ in range(3):
        assert (
            error_of(password(from_ip(server, ATTACKER), secret="wrong password 1234"))
            == "invalid_credentials"
        )
    assert password(from_ip(server, NEW)).json() == {"status": "totp_enrollment_required"}
