"""`keyctl server` and `keyctl server user add` as a user runs them."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from keyctl.errors import ExitCode
from keyctl.server import start
from tests.conftest import run_keyctl
from tests.server.conftest import EMAIL, PASSWORD, client, http_client


def users(db: Path) -> list[str]:
    connection = sqlite3.connect(db)
    try:
        return [row[0] for row in connection.execute("SELECT email FROM users")]
    finally:
        connection.close()


def test_user_add_from_env_var_then_sign_in(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "rp.sqlite3"
    monkeypatch.setenv("RP_PASSWORD", PASSWORD)
    result = cli(
        "server", "user", "add", "Alice@Example.com", "--db", str(db), "--password-env", "RP_PASSWORD"
    )
    assert result.exit_code == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    with start(db) as server:
        response = client(server).post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
        assert response.json() == {"status": "totp_enrollment_required"}


def test_user_add_from_stdin_as_a_process(tmp_path: Path) -> None:
    db = tmp_path / "rp.sqlite3"
    result = run_keyctl(["server", "user", "add", EMAIL, "--db", str(db)], stdin=PASSWORD + "\n")
    assert result.exit_code == 0, result.stderr
    assert users(db) == [EMAIL]


def test_user_add_refuses_weak_and_duplicate(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "rp.sqlite3"
    monkeypatch.setenv("RP_PASSWORD", "password1234")
    weak = cli("server", "user", "add", EMAIL, "--db", str(db), "--password-env", "RP_PASSWORD")
    assert weak.exit_code == ExitCode.INVALID_INPUT
    assert "common or breached" in weak.stderr
    assert "password1234" not in weak.stderr
    assert users(db) == []
    monkeypatch.setenv("RP_PASSWORD", PASSWORD)
    assert (
        cli("server", "user", "add", EMAIL, "--db", str(db), "--password-env", "RP_PASSWORD").exit_code == 0
    )
    again = cli("server", "user", "add", EMAIL, "--db", str(db), "--password-env", "RP_PASSWORD")
    assert again.exit_code == ExitCode.ALREADY_EXISTS
    missing = cli("server", "user", "add", EMAIL, "--db", str(db), "--password-env", "NOPE_UNSET")
    assert missing.exit_code == ExitCode.INVALID_INPUT


def _serve(
    tmp_path: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "keyctl",
            "server",
            "--port",
            "0",
            "--db",
            str(tmp_path / "rp.sqlite3"),
            *extra,
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stderr is not None
    first = process.stderr.readline()
    assert first.startswith("keyctl server: http://localhost:"), first
    return process, first.split()[2]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_server_runs_and_stops_cleanly(tmp_path: Path, stop: signal.Signals) -> None:
    process, url = _serve(tmp_path, "--admin-token-env", "RP_ADMIN", env={"RP_ADMIN": "s3cret-token"})
    try:
        with http_client(url, headers={"Authorization": "Bearer s3cret-token"}) as a:
            created = a.post("/api/admin/users", json={"email": EMAIL, "password": PASSWORD})
            assert created.status_code == 201
            page = a.get("/")
            assert "Continue with a passkey" in page.text
    finally:
        process.send_signal(stop)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "stopped" in err
    assert "s3cret-token" not in err
    assert users(tmp_path / "rp.sqlite3") == [EMAIL]  # nothing lost


def test_admin_token_is_printed_when_not_given(tmp_path: Path) -> None:
    process, url = _serve(tmp_path)
    try:
        assert process.stderr is not None
        token = process.stderr.readline().strip().removeprefix("admin token: ")
        http = http_client(url)
        assert http.get("/api/admin/users", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert http.get("/api/admin/users", headers={"Authorization": "Bearer wrong"}).status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)
    assert process.returncode == 0


def test_origin_must_match_rp_id(tmp_path: Path, cli: Any) -> None:
    result = cli(
        "server", "--port", "0", "--db", str(tmp_path / "rp.sqlite3"), "--origin", "https://evil.example"
    )
    assert result.exit_code == ExitCode.INVALID_INPUT
    assert "not localhost" in result.stderr


def test_user_add_while_the_server_runs(tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "rp.sqlite3"
    monkeypatch.setenv("RP_PASSWORD", PASSWORD)
    with start(db) as server:
        assert (
            cli("server", "user", "add", EMAIL, "--db", str(db), "--password-env", "RP_PASSWORD").exit_code
            == 0
        )
        response = client(server).post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
        assert response.json() == {"status": "totp_enrollment_required"}
