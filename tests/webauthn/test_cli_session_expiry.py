"""`keyctl login --json` reports when the new session ends (#19 item 5), as the server set it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.webauthn.conftest import PASSWORD, Reference, authenticator


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_login_json_reports_the_session_expiry(
    cli: Callable[..., Any],
    reference: Reference,
    udp_authenticator: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference.account("hana@example.com").close()
    reference.clock.offset = 3 * 86400.0  # the server's clock, not this machine's, sets the times
    monkeypatch.setenv("PW", PASSWORD)
    monkeypatch.setenv("RC", reference.recovery["hana@example.com"])
    base = ("--server", reference.url, "--user", "hana@example.com", "--json")
    password = cli("login", *base, "--password-env", "PW", "--recovery-code-env", "RC")
    assert password.exit_code == 0, password.stderr
    answer = json.loads(password.stdout)
    signed_in_at = datetime.strptime(answer["idle_expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    at = signed_in_at.timestamp() - 86400
    assert abs(at - reference.clock()) < 60
    assert answer["absolute_expires_at"] == iso(at + 7 * 86400)

    device = udp_authenticator(authenticator())
    monkeypatch.setenv("RC", answer["recovery_code"])
    registered = cli(
        "register", *base, "--password-env", "PW", "--recovery-code-env", "RC", "--authenticator", device
    )
    assert registered.exit_code == 0, registered.stderr
    passkey = cli("login", *base, "--authenticator", device)
    assert passkey.exit_code == 0, passkey.stderr
    answer = json.loads(passkey.stdout)
    idle = datetime.strptime(answer["idle_expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    assert abs(idle - 86400 - reference.clock()) < 60
    assert answer["absolute_expires_at"] == iso(idle - 86400 + 7 * 86400)
