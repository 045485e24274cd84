"""Seed policy points (issue #14 item 10): suspicious-IP throttling across accounts, and breached
passwords checked at every password sign-in with a password-change step (server and keyctl's client)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keyctl.errors import SignInFailed
from keyctl.server import ServerHandle, passwords, start
from keyctl.webauthn import profile, signin
from keyctl.webauthn.session import Session
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
    sql,
    totp_code,
)
from tests.terminal import TerminalSession

DAY = 24 * 3600
IP_LIMIT = 6
ACCOUNTS = ["a@example.com", "b@example.com", "c@example.com"]


@pytest.fixture
def throttled(db_target: Path | str, clock: FakeClock) -> Iterator[ServerHandle]:
    with start(
        db_target, clock=clock, rate_limit=100_000, max_failures=5, ip_max_failures=IP_LIMIT
    ) as server:
        for email in [*ACCOUNTS, EMAIL]:
            server.create_user(email, PASSWORD)
        yield server


def from_other_ip(server: ServerHandle) -> httpx.Client:
    """A client whose connections come from 127.0.0.2 (another address on the loopback network)."""
    return http_client(server.local_url, transport=httpx.HTTPTransport(local_address="127.0.0.2"))


def password_step(http: httpx.Client, email: str = EMAIL, password: str = PASSWORD) -> httpx.Response:
    return http.post("/api/signin/password", json={"email": email, "password": password})


def use_up_the_allowance(http: httpx.Client) -> None:
    """Two wrong passwords on each of three accounts: no account reaches its limit of 5."""
    for email in ACCOUNTS:
        for _ in range(2):
            assert error_of(password_step(http, email, "not the password!")) == "invalid_credentials"


def test_failures_across_accounts_block_the_ip(throttled: ServerHandle) -> None:
    http = client(throttled)
    use_up_the_allowance(http)
    refused = password_step(http)  # the right password, an account with no failures
    assert refused.status_code == 429, refused.text
    assert error_of(refused) == "ip_blocked"
    assert int(refused.headers["Retry-After"]) == DAY // IP_LIMIT  # one attempt refills in 4 hours
    with from_other_ip(throttled) as other:  # the block is the IP's, not the account's
        assert password_step(other).json() == {"status": "totp_enrollment_required"}
    with admin(throttled) as a:
        blocks = a.get("/api/admin/blocks").json()
    assert blocks["blocks"] == []  # no account block
    assert [b["ip"] for b in blocks["ip_blocks"]] == ["127.0.0.1"]
    events = [e["event"] for e in audit_events(throttled)]
    assert events.count("ip_blocked") == 1
    assert "signin_refused_ip_blocked" in events


def test_an_admin_lifts_an_ip_block(throttled: ServerHandle) -> None:
    http = client(throttled)
    use_up_the_allowance(http)
    assert error_of(password_step(http)) == "ip_blocked"
    with admin(throttled) as a:
        assert a.post("/api/admin/unblock", json={"ip": "127.0.0.1"}).status_code == 200
        assert a.get("/api/admin/blocks").json()["ip_blocks"] == []
    assert password_step(http).json() == {"status": "totp_enrollment_required"}
    lifted = [e for e in audit_events(throttled) if e["event"] == "ip_unblocked"]
    assert [(e["ip"], e["detail"]) for e in lifted] == [("127.0.0.1", {"by": "admin"})]


def test_the_allowance_refills_over_a_day(throttled: ServerHandle, clock: FakeClock) -> None:
    http = client(throttled)
    use_up_the_allowance(http)
    clock.advance(DAY // IP_LIMIT - 60)
    assert error_of(password_step(http)) == "ip_blocked"
    clock.advance(61)  # one failed attempt's worth has refilled
    assert error_of(password_step(http, "c@example.com", "not the password!")) == "invalid_credentials"
    assert error_of(password_step(http)) == "ip_blocked"  # and it was spent at once
    clock.advance(DAY)
    assert password_step(http).json() == {"status": "totp_enrollment_required"}


def test_successful_sign_ins_do_not_use_the_allowance(throttled: ServerHandle) -> None:
    http = client(throttled)
    for _ in range(IP_LIMIT + 2):
        assert password_step(http).status_code == 200


BREACHED = "iloveyou"  # on the bundled list; accounts made before a list update can still have one
NEW_PASSWORD = "a fresh and uncommon passphrase"


def set_password_hash(server: ServerHandle, email: str, password: str) -> None:
    sql(
        server,
        "UPDATE users SET password_hash = ? WHERE email = ? RETURNING id",
        (passwords.hash_password(password), email),
    )


def test_a_breached_password_must_be_changed_before_the_session_is_granted(
    server: ServerHandle, clock: FakeClock
) -> None:
    account = enroll(server, clock)
    earlier = account.http  # a signed-in session from before: the change ends it
    set_password_hash(server, EMAIL, BREACHED)
    http = client(server)
    assert password_step(http, password=BREACHED).json() == {"status": "password_change_required"}
    assert error_of(http.get("/api/me")) == "password_change_required"
    clock.advance(30)
    code = totp_code(account.secret, clock())
    assert error_of(http.post("/api/signin/totp", json={"code": code})) == "password_change_required"
    weak = http.post("/api/signin/password/change", json={"new_password": "Sunshine2024!"})
    assert error_of(weak) == "weak_password"

    changed = http.post("/api/signin/password/change", json={"new_password": NEW_PASSWORD})
    assert changed.json() == {"status": "totp_required"}, changed.text
    assert http.post("/api/signin/totp", json={"code": code}).status_code == 200
    assert http.get("/api/me").json()["email"] == EMAIL
    assert error_of(earlier.get("/api/me")) == "not_signed_in"
    assert error_of(password_step(client(server), password=BREACHED)) == "invalid_credentials"
    assert password_step(client(server), password=NEW_PASSWORD).json() == {"status": "totp_required"}
    events = [e["event"] for e in audit_events(server)]
    assert events.index("signin_password_breached") < events.index("password_changed")


def test_the_change_step_needs_its_own_session(server: ServerHandle, clock: FakeClock) -> None:
    create_user(server)
    http = client(server)
    password_step(http)  # a normal password step: no change asked for
    refused = http.post("/api/signin/password/change", json={"new_password": NEW_PASSWORD})
    assert error_of(refused) == "totp_enrollment_required"
    assert error_of(password_step(client(server), password=NEW_PASSWORD)) == "invalid_credentials"


def test_keyctl_signs_in_through_the_password_change(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    set_password_hash(server, EMAIL, BREACHED)
    clock.advance(30)
    asked: list[str] = []

    def new_password() -> str:
        asked.append("new password")
        return NEW_PASSWORD

    code = totp_code(account.secret, clock())
    credentials = signin.Password(EMAIL, BREACHED, totp=lambda: code, new_password=new_password)
    said: list[str] = []
    with Session(server.url, profile.load("keyctl"), server.url) as session:
        result = signin.password_sign_in(session, credentials, said.append)
    assert (result.user, result.method) == (EMAIL, "totp")
    assert asked == ["new password"]
    assert any("password changed" in line for line in said)
    assert password_step(client(server), password=NEW_PASSWORD).json() == {"status": "totp_required"}

    set_password_hash(server, EMAIL, BREACHED)
    without = signin.Password(EMAIL, BREACHED, totp=lambda: code)
    with (
        Session(server.url, profile.load("keyctl"), server.url) as session,
        pytest.raises(SignInFailed, match="requires a new password"),
    ):
        signin.password_sign_in(session, without, said.append)


def test_keyctl_login_asks_for_the_new_password_on_the_terminal(
    server: ServerHandle, clock: FakeClock
) -> None:
    account = enroll(server, clock)
    set_password_hash(server, EMAIL, BREACHED)
    env = {"PW": BREACHED, "RC": account.recovery_code}
    args = [
        "login",
        "--server",
        server.url,
        "--user",
        EMAIL,
        "--password-env",
        "PW",
        "--recovery-code-env",
        "RC",
    ]
    terminal = TerminalSession(args, env)
    terminal.expect("New password: ")
    terminal.type(NEW_PASSWORD + "\n")
    terminal.expect("Repeat the new password: ")
    terminal.type(NEW_PASSWORD + "\n")
    assert terminal.wait() == 0, terminal.text
    assert f"signed in as {EMAIL} with password and recovery" in terminal.text
    assert NEW_PASSWORD not in terminal.text  # getpass: no echo
    assert password_step(client(server), password=NEW_PASSWORD).json() == {"status": "totp_required"}
