"""Fixtures for the reference server's tests: a real server (uvicorn on a free loopback port) with an
injected clock, httpx clients, TOTP codes from Debian's oathtool, and the software authenticator.

Every test using ``server`` (or ``db_target``) runs twice: on an SQLite file and on a fresh database of a
throwaway PostgreSQL cluster (tests/postgres.py, one per test session)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyctl.server import ServerHandle, start
from keyctl.server.storage import Param
from tests.postgres import Cluster
from tests.server.softauth import SoftAuthenticator

PASSWORD = "correct horse battery staple"
EMAIL = "alice@example.com"
ADMIN = (
    "root@example.com"  # the servers' named admin (--admin-email): sensitive admin actions need its step-up
)


class FakeClock:
    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    cluster = Cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """The server's database: an SQLite file, or the URL of a new PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "rp.sqlite3"
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return cluster.database()


@pytest.fixture
def server(db_target: Path | str, clock: FakeClock) -> Iterator[ServerHandle]:
    with start(db_target, clock=clock, rate_limit=100_000, admin_emails=(ADMIN,)) as handle:
        yield handle


def sql(server: ServerHandle, statement: str, params: tuple[Param, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the server's database, whichever it is, committed; the rows it returns."""
    return server.policy.db.run(lambda tx: [tuple(row.values()) for row in tx.all(statement, params)])


def totp_code(secret: str, at: float) -> str:
    """The TOTP code for a moment, computed by oathtool (independent of pyotp, which the server uses)."""
    return subprocess.run(
        ["oathtool", "--totp", "--base32", secret, "--now", f"@{int(at)}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def http_client(base_url: str = "", **options: Any) -> httpx.Client:
    # Plain http on loopback: verify=False only skips loading the CA bundle, which costs more than the
    # requests themselves (about 100 ms per client on a busy machine).
    return httpx.Client(base_url=base_url, verify=False, **options)


def admin(server: ServerHandle) -> httpx.Client:
    return http_client(server.url, headers={"Authorization": f"Bearer {server.admin_token}"})


def client(server: ServerHandle) -> httpx.Client:
    return http_client(server.url)


def create_user(server: ServerHandle, email: str = EMAIL, password: str = PASSWORD) -> None:
    with admin(server) as a:
        response = a.post("/api/admin/users", json={"email": email, "password": password})
        assert response.status_code == 201, response.text


@dataclass
class Account:
    email: str
    secret: str
    recovery_code: str
    http: httpx.Client  # signed in


def enroll(server: ServerHandle, clock: FakeClock, email: str = EMAIL) -> Account:
    """Create an account and walk its first sign-in: password, TOTP enrollment, recovery code."""
    create_user(server, email)
    http = client(server)
    step = http.post("/api/signin/password", json={"email": email, "password": PASSWORD})
    assert step.json() == {"status": "totp_enrollment_required"}, step.text
    secret = http.post("/api/signin/totp/enroll", json={}).json()["secret"]
    verified = http.post("/api/signin/totp/enroll/verify", json={"code": totp_code(secret, clock())})
    recovery = verified.json()["recovery_code"]
    done = http.post("/api/signin/recovery/confirm", json={"recovery_code": recovery})
    assert done.status_code == 200, done.text
    return Account(email, secret, recovery, http)


def sign_in(server: ServerHandle, clock: FakeClock, account: Account) -> httpx.Client:
    """A later password + TOTP sign-in (a fresh TOTP step, since each code works once)."""
    clock.advance(30)
    http = client(server)
    step = http.post("/api/signin/password", json={"email": account.email, "password": PASSWORD})
    assert step.json() == {"status": "totp_required"}, step.text
    done = http.post("/api/signin/totp", json={"code": totp_code(account.secret, clock())})
    assert done.status_code == 200, done.text
    return http


def stepped_up(server: ServerHandle, clock: FakeClock, admin_account: Account) -> httpx.Client:
    """The admin API as the named admin ``admin_account`` (enrolled with ``enroll``) just confirmed with a
    TOTP code: its requests carry the step-up token, valid 5 minutes of ``clock``."""
    clock.advance(30)  # a TOTP step of its own: each works once
    with admin(server) as a:
        answer = a.post(
            "/api/admin/step-up/totp",
            json={"email": admin_account.email, "code": totp_code(admin_account.secret, clock())},
        )
    assert answer.status_code == 200, answer.text
    token = answer.json()["step_up_token"]
    return http_client(
        server.url, headers={"Authorization": f"Bearer {server.admin_token}", "Keyctl-Step-Up": token}
    )


def register(http: httpx.Client, authenticator: SoftAuthenticator, **options: Any) -> httpx.Response:
    created = http.post("/api/passkeys/register/options", json=options)
    assert created.status_code == 200, created.text
    return http.post("/api/passkeys/register/verify", json=authenticator.create(created.json()))


def error_of(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error", "message"}, body
    assert 400 <= response.status_code < 500
    return str(body["error"])


def snapshot(server: ServerHandle) -> dict[str, list[tuple[Any, ...]]]:
    """Everything but the audit log and challenges, to show a refused request wrote nothing."""
    return {
        table: sorted(sql(server, f"SELECT * FROM {table}"), key=repr)
        for table in ("users", "passkeys", "sessions", "failures")
    }


def audit_events(server: ServerHandle) -> list[dict[str, Any]]:
    with admin(server) as a:
        events: list[dict[str, Any]] = a.get("/api/admin/audit", params={"limit": 1000}).json()["events"]
        return events
