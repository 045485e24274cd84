"""`keyctl register` in a reused session the server wants confirmed again (#19 item 2): without a way to
step up it stops with a clear error that changes nothing; with --totp-secret-env it sends a code (the
server checks it against its own TOTP) and retries."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from keyctl.webauthn import signin
from tests.webauthn.conftest import PASSWORD, Reference, authenticator, oathtool_code


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
