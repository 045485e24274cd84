"""`keyctl register` in a reused session the server wants confirmed again (#19 item 2): without a way to
step up it stops with a clear error that changes nothing; with --totp-secret-env it sends a code (the
server checks it against its own TOTP), with --step-up-device it signs the step-up with one of the
account's passkeys on that authenticator, and retries."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from keyctl.server import start
from keyctl.webauthn import profile, signin
from keyctl.webauthn.session import Session
from tests.server.conftest import FakeClock
from tests.webauthn.conftest import PASSWORD, Reference, authenticator, oathtool_code, sign_up


def test_register_in_an_old_session_steps_up_with_a_totp_code(
    cli: Callable[..., Any],
    reference: Reference,
    udp_authenticator: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    email = "ivy@example.com"
    reference.server.create_user(email, PASSWORD)
    secrets: list[str] = []

    def enroll(uri: str) -> signin.CodeSource:
        secrets.append(parse_qs(urlsplit(uri).query)["secret"][0])
        return lambda: oathtool_code(secrets[0], time.time() - 30)  # the previous step: the next one is free

    jar = tmp_path / "session.jar"
    with reference.session() as session:
        signin.password_sign_in(session, signin.Password(email, PASSWORD, enroll=enroll), lambda step: None)
        session.save_cookies(jar)
    # The sign-in was 10 minutes ago: its verification (5 minutes) is over.
    reference.server.policy.db.run(
        lambda tx: tx.execute(
            "UPDATE sessions SET created_at = created_at - 600, verified_at = verified_at - 600"
        )
    )
    device = udp_authenticator(authenticator())
    base = (
        "register",
        "--server",
        reference.url,
        "--user",
        email,
        "--cookie-jar",
        str(jar),
        "--authenticator",
        device,
    )
    refused = cli(*base)
    assert refused.exit_code == 21, refused.stdout + refused.stderr
    assert "Confirm it's you" in refused.stderr
    assert "--totp NAME or --totp-secret-env VAR" in refused.stderr
    with reference.session() as session:
        session.load_cookies(jar)
        assert session.call("GET", "/api/me")["passkeys"] == []

    monkeypatch.setenv("TS", secrets[0])
    done = cli(*base, "--totp-secret-env", "TS")
    assert done.exit_code == 0, done.stderr
    assert f"registered a passkey for {email}" in done.stdout
    with reference.session() as session:
        session.load_cookies(jar)
        assert len(session.call("GET", "/api/me")["passkeys"]) == 1


def test_register_steps_up_with_a_passkey_on_another_authenticator(
    cli: Callable[..., Any], udp_authenticator: Callable[..., str], tmp_path: Path
) -> None:
    """The server's clock is injected: the sign-in's verification holds at 4:59 and is over at 5:01."""
    clock = FakeClock()
    email = "jon@example.com"
    with start(tmp_path / "rp.sqlite3", clock=clock, rate_limit=100_000) as server:
        server.create_user(email, PASSWORD)
        jar = tmp_path / "session.jar"
        with Session(server.url, profile.load("keyctl"), server.url) as session:
            sign_up(session, email, clock)
            session.save_cookies(jar)
        first, second, third, stranger = (udp_authenticator(authenticator()) for _ in range(4))

        def register(device: str, *more: str) -> Any:
            return cli(
                "register",
                "--server",
                server.url,
                "--user",
                email,
                "--cookie-jar",
                str(jar),
                "--device",
                device,
                *more,
            )

        def passkeys() -> int:
            with Session(server.url, profile.load("keyctl"), server.url) as session:
                session.load_cookies(jar)
                return len(session.call("GET", "/api/passkeys")["passkeys"])

        assert register(first).exit_code == 0
        clock.advance(5 * 60 - 1)  # 4:59 after the sign-in: no step-up asked
        fresh = register(second)
        assert fresh.exit_code == 0, fresh.stderr
        clock.advance(2)  # 5:01
        refused = register(third)
        assert refused.exit_code == 21, refused.stderr
        assert "Confirm it's you" in refused.stderr
        assert "--step-up-device SPEC with a passkey" in refused.stderr
        # An authenticator without a passkey of the account cannot confirm it: nothing registered.
        foreign = register(third, "--step-up-device", stranger)
        assert foreign.exit_code == 10, foreign.stderr
        assert passkeys() == 2
        stepped_up = register(third, "--step-up-device", first)
        assert stepped_up.exit_code == 0, stepped_up.stderr
        assert passkeys() == 3
        events = server.policy.db.run(
            lambda tx: tx.all("SELECT detail FROM audit WHERE event = 'step_up' ORDER BY id")
        )
        assert [json.loads(e["detail"]) for e in events] == [{"method": "passkey"}]
        both = register(third, "--step-up-device", first, "--totp-secret-env", "TS")
        assert both.exit_code == 3
        assert "--totp-secret-env and --step-up-device exclude each other" in both.stderr
