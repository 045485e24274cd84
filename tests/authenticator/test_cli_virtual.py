"""`keyctl virtual` end to end: create, list, info, export/import, remove, serve."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fido2.ctap2 import Ctap2

from keyctl.authenticator import store
from keyctl.errors import ExitCode
from keyctl.hid import open_device
from tests.authenticator import rp
from tests.conftest import Result, run_keyctl

Cli = Callable[..., Result]


@pytest.fixture
def ci_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = store.new_ci_key()
    monkeypatch.setenv(store.ENV_VIRTUAL_KEY, key)
    return key


def test_create_list_info_remove(cli: Cli, ci_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI_PIN", "424242")
    aaguid = "0bb43545-fd2c-4185-87dd-feb0b2916ace"
    result = cli("virtual", "create", "ci", "--aaguid", aaguid, "--attestation", "x5c", "--pin-env", "CI_PIN")
    assert result.exit_code == 0, result.stderr
    assert "424242" not in result.stdout + result.stderr
    assert json.loads(cli("virtual", "list", "--json").stdout) == [{"name": "ci", "device": "virtual:ci"}]
    info = json.loads(cli("virtual", "info", "ci", "--json").stdout)
    assert info["aaguid"] == aaguid
    assert info["attestation"] == "x5c"
    assert info["pin_set"] is True
    assert info["state_key"] == "KEYCTL_VIRTUAL_KEY"
    assert info["attestation_ca_pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert cli("virtual", "export-ca", "ci").stdout.strip() == info["attestation_ca_pem"].strip()
    assert Ctap2(open_device("virtual:ci")).get_info().options["clientPin"] is True

    assert cli("virtual", "create", "ci").exit_code == ExitCode.ALREADY_EXISTS
    assert cli("virtual", "delete", "ci").exit_code == ExitCode.CANCELED  # no terminal, no --yes
    assert cli("virtual", "remove", "ci", "--yes").exit_code == 0
    assert cli("virtual", "info", "ci").exit_code == ExitCode.NOT_FOUND
    assert cli("virtual", "list", "--json").stdout.strip() == "[]"


@pytest.mark.parametrize(
    "args",
    [
        ["virtual", "create", "bad name"],
        ["virtual", "create", "x", "--aaguid", "not-a-uuid"],
        ["virtual", "create", "x", "--pin-env", "UNSET_VARIABLE_FOR_TEST"],
        ["virtual", "create", "x", "--ep-rp-id", "https://login.example.com"],
        ["virtual", "create", "x", "--ep-rp-id", "example.com", "--ep-rp-id", ""],
    ],
)
def test_bad_input_changes_nothing(cli: Cli, ci_key: str, args: list[str]) -> None:
    result = cli(*args)
    assert result.exit_code == ExitCode.INVALID_INPUT
    assert result.stderr.startswith("error: ")
    assert store.names() == []


def test_enterprise_rp_ids_are_fixed_at_creation(cli: Cli, ci_key: str) -> None:
    created = cli("virtual", "create", "ep", "--ep-rp-id", "login.example.com", "--ep-rp-id", "sso.example")
    assert created.exit_code == 0, created.stderr
    info = json.loads(cli("virtual", "info", "ep", "--json").stdout)
    assert info["enterprise_attestation_rp_ids"] == ["login.example.com", "sso.example"]
    assert store.FileStore("ep").load().ep_rp_ids == ["login.example.com", "sso.example"]


def test_state_is_encrypted_at_rest(cli: Cli, ci_key: str, isolated_home: Path) -> None:
    assert cli("virtual", "create", "ci", "--aaguid", "0bb43545-fd2c-4185-87dd-feb0b2916ace").exit_code == 0
    raw = (isolated_home / "data" / "virtual" / "ci.state").read_bytes()
    assert bytes.fromhex("0bb43545fd2c418587ddfeb0b2916ace") not in raw
    assert b"counterMode" not in raw
    assert oct((isolated_home / "data" / "virtual" / "ci.state").stat().st_mode & 0o777) == "0o600"


def test_wrong_or_missing_ci_key_is_a_state_error(
    cli: Cli, ci_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("virtual", "create", "ci").exit_code == 0
    monkeypatch.setenv(store.ENV_VIRTUAL_KEY, store.new_ci_key())
    result = cli("virtual", "info", "ci")
    assert result.exit_code == ExitCode.STATE
    assert "cannot decrypt" in result.stderr
    monkeypatch.delenv(store.ENV_VIRTUAL_KEY)
    result = cli("virtual", "info", "ci")
    assert result.exit_code == ExitCode.STATE
    assert store.ENV_VIRTUAL_KEY in result.stderr
    monkeypatch.setenv(store.ENV_VIRTUAL_KEY, "too-short")
    assert cli("virtual", "info", "ci").exit_code == ExitCode.INVALID_INPUT
    monkeypatch.delenv(store.ENV_VIRTUAL_KEY)
    assert cli("virtual", "remove", "ci", "--yes").exit_code == 0  # removing needs no key
    assert store.names() == []


def test_export_import_round_trip_keeps_the_passkeys(
    cli: Cli, ci_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("virtual", "create", "ci").exit_code == 0
    registered = rp.register(open_device("virtual:ci"))
    exported = run_keyctl(["virtual", "export", "ci"])  # stdout is a pipe here
    assert exported.exit_code == 0
    blob = exported.stdout.strip()
    assert blob.startswith("keyctl-virtual-1:")
    # another machine, another key
    monkeypatch.setenv(store.ENV_VIRTUAL_KEY, store.new_ci_key())
    imported = run_keyctl(["virtual", "import", "copy"], stdin=blob + "\n")
    assert imported.exit_code == 0, imported.stderr
    challenge, options = rp.request_options([registered.credential_id])
    response = rp.authenticate_response(open_device("virtual:copy"), options)
    assert rp.verify_assertion(response, challenge, registered, registered.sign_count) > registered.sign_count
    bad = run_keyctl(["virtual", "import", "other"], stdin="keyctl-virtual-1:AAAA\n")
    assert bad.exit_code == ExitCode.INVALID_INPUT


def test_secrets_are_not_printed_on_a_terminal(ci_key: str) -> None:
    """export and ci-key refuse a TTY stdout unless --reveal (run under a real pseudo-terminal)."""
    import pty

    assert run_keyctl(["virtual", "create", "ci"]).exit_code == 0
    for args in (["virtual", "export", "ci"], ["virtual", "ci-key"]):
        pid, fd = pty.fork()
        if pid == 0:  # child: stdout is the pty
            os.execve(sys.executable, [sys.executable, "-m", "keyctl", *args], dict(os.environ))
        output = b""
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == ExitCode.INVALID_INPUT
        assert b"--reveal" in output
        assert b"keyctl-virtual-1:" not in output


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_answers_over_udp_and_refuses_remote_binds(ci_key: str) -> None:
    assert run_keyctl(["virtual", "create", "ci"]).exit_code == 0
    refused = run_keyctl(["virtual", "serve", "ci", "--udp", "0.0.0.0:8111"])
    assert refused.exit_code == ExitCode.INVALID_INPUT
    assert "--allow-remote" in refused.stderr
    port = _free_udp_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "keyctl", "virtual", "serve", "ci", "--udp", f"127.0.0.1:{port}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        assert "serving virtual:ci" in server.stderr.readline()
        device: Any = None
        for _ in range(50):
            try:
                device = open_device(f"udp:127.0.0.1:{port}")
                break
            except Exception:
                time.sleep(0.1)
        registered = rp.register(device)
        challenge, options = rp.request_options([registered.credential_id])
        assert rp.verify_assertion(rp.authenticate_response(device, options), challenge, registered, 0) > 0
    finally:
        server.terminate()
        server.wait(timeout=10)
    # the state the server saved is the same authenticator, reachable in-process
    response = rp.authenticate_response(
        open_device("virtual:ci"), rp.request_options([registered.credential_id])[1]
    )
    assert response["id"]
