"""The "device-bound passkeys only" site policy (`keyctl server --device-bound-only`): synced passkeys
(backup-eligible) are refused at registration and at login, with the catalogue's "Verification failed"
and nothing written; device-bound ones go through. Responses come from the test's own software
authenticator (tests/server/softauth.py), so the server's check is judged by flags it did not set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keyctl.server import ServerHandle, start
from keyctl.server.policy import SYNCED_MESSAGE
from tests.server.conftest import (
    EMAIL,
    FakeClock,
    audit_events,
    client,
    enroll,
    error_of,
    register,
    sign_in,
    snapshot,
)
from tests.server.softauth import AT, BE, BS, UP, UV, SoftAuthenticator


@pytest.fixture
def strict(db_target: Path | str, clock: FakeClock) -> Iterator[ServerHandle]:
    with start(db_target, clock=clock, rate_limit=100_000, device_bound_only=True) as handle:
        yield handle


def _login(server: ServerHandle, key: SoftAuthenticator, **tamper: object) -> httpx.Response:
    http = client(server)
    options = http.post("/api/passkeys/login/options", json={"email": EMAIL}).json()
    return http.post("/api/passkeys/login/verify", json=key.get(options, **tamper))  # type: ignore[arg-type]


def test_synced_passkey_is_refused_with_nothing_written(strict: ServerHandle, clock: FakeClock) -> None:
    account = enroll(strict, clock)
    before = snapshot(strict)
    refused = register(account.http, SoftAuthenticator(strict.url, backup=True))
    assert error_of(refused) == "verification_failed"
    assert refused.json()["message"] == SYNCED_MESSAGE
    assert snapshot(strict) == before
    event = [e for e in audit_events(strict) if e["event"] == "passkey_register_refused"][-1]
    assert event["detail"]["policy"] == "device_bound_only"


def test_backup_eligible_without_backup_yet_is_still_synced(strict: ServerHandle, clock: FakeClock) -> None:
    account = enroll(strict, clock)
    created = account.http.post("/api/passkeys/register/options", json={}).json()
    body = SoftAuthenticator(strict.url).create(created, flags=UP | UV | AT | BE)  # BE=1, BS=0
    refused = account.http.post("/api/passkeys/register/verify", json=body)
    assert error_of(refused) == "verification_failed"


def test_device_bound_passkey_registers_and_logs_in(strict: ServerHandle, clock: FakeClock) -> None:
    account = enroll(strict, clock)
    key = SoftAuthenticator(strict.url)
    assert register(account.http, key).status_code == 200
    assert _login(strict, key).status_code == 200


def test_synced_passkey_from_before_the_policy_cannot_log_in(db_target: Path | str, clock: FakeClock) -> None:
    db = db_target
    key = SoftAuthenticator("", backup=True)
    with start(db, clock=clock, rate_limit=100_000) as lenient:
        key.origin = lenient.url
        account = enroll(lenient, clock)
        assert register(account.http, key).status_code == 200
        assert _login(lenient, key, flags=UP | UV | BE | BS).status_code == 200
    with start(db, clock=clock, rate_limit=100_000, device_bound_only=True) as strict:
        key.origin = strict.url
        before = snapshot(strict)
        refused = _login(strict, key, flags=UP | UV | BE | BS)
        assert error_of(refused) == "verification_failed"
        assert refused.json()["message"] == SYNCED_MESSAGE
        assert snapshot(strict) == before  # no session, no sign-count or last-used update
        assert sign_in(strict, clock, account).get("/api/me").status_code == 200  # password + 2FA still work
