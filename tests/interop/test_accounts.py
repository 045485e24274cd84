"""Several discoverable passkeys for one site on one authenticator (issue #13 item 5): a username-less
login chooses as a browser does. The relying party is py_webauthn's (a real server on loopback); the
terminal choice is driven through a real pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from keyctl.authenticator import VirtualAuthenticator
from keyctl.errors import ExitCode, NoCredential
from keyctl.hid.udp import UdpServer
from keyctl.webauthn import flows
from tests.interop import matrix
from tests.interop.conftest import PROFILE, ROOT, RelyingParty


@pytest.fixture
def two_accounts(relying_parties: dict[str, RelyingParty]) -> Iterator[tuple[matrix.Run, Any, list[str]]]:
    """A virtual key (also served over UDP) holding discoverable passkeys of two users of one site."""
    run = matrix.Run(relying_parties["py_webauthn"])
    key = matrix.key()
    names = [matrix.user(), matrix.user()]
    ids = [run.register(key, flows.Request(user=name, resident=True)) for name in names]
    assert all(i["verified"] for i in ids)
    server = UdpServer(key, "127.0.0.1", 0).start()
    host, port = server.address
    yield run, (key, f"udp:{host}:{port}"), names
    server.stop()


def _login(run: matrix.Run, key: VirtualAuthenticator, **request: Any) -> Any:
    return run.login(key, flows.Request(**request))


def test_a_script_without_a_choice_gets_the_candidates(two_accounts: Any) -> None:
    run, (key, _), names = two_accounts
    with pytest.raises(flows.AmbiguousAccount) as ambiguous:
        _login(run, key)
    assert sorted(c.name for c in ambiguous.value.candidates) == sorted(names)
    assert ambiguous.value.exit_code == ExitCode.INVALID_INPUT
    assert ambiguous.value.message.startswith("2 passkeys for localhost on this device: ")
    assert all(name in ambiguous.value.message for name in names)
    assert ambiguous.value.remedy == "choose one with --account NAME or --credential ID"


def test_account_or_credential_chooses(two_accounts: Any) -> None:
    run, (key, _), names = two_accounts
    for name in names:
        assert _login(run, key, account=name)["username"] == name
    with pytest.raises(flows.AmbiguousAccount) as ambiguous:
        _login(run, key)
    for candidate in ambiguous.value.candidates:
        assert _login(run, key, credential=candidate.credential_id)["username"] == candidate.name
    with pytest.raises(NoCredential) as missing:
        _login(run, key, account="nobody@example.com")
    assert (
        "Passkey not found on this device for account nobody@example.com at localhost"
        in missing.value.message
    )
    assert all(name in missing.value.message for name in names)


def test_a_key_that_has_not_verified_you_names_no_accounts(two_accounts: Any) -> None:
    """Without user verification an authenticator returns only the user ids (CTAP 2.1 §6.2.2): --account
    cannot match, and the error says why and what chooses instead."""
    run, (key, _), names = two_accounts
    with pytest.raises(NoCredential) as missing:
        _login(run, key, account=names[0], uv="discouraged")
    assert missing.value.message.startswith(
        f"Passkey not found on this device for account {names[0]} at localhost: the key names accounts only"
        " after it has verified you (it has: user id "
    )
    assert missing.value.remedy == (
        "choose one with --credential ID, or add --uv required (a PIN or built-in verification)"
    )
    with pytest.raises(flows.AmbiguousAccount) as ambiguous:
        _login(run, key, uv="discouraged")
    chosen = ambiguous.value.candidates[1]
    assert chosen.name is None
    assert _login(run, key, credential=chosen.credential_id, uv="discouraged")["username"] in names


def _keyctl(run: matrix.Run, device: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "keyctl", "login", "--server", run.rp.url, "--profile", str(PROFILE),
        "--authenticator", device, *extra,
    ]  # fmt: skip


def test_json_lists_the_candidates_as_data(two_accounts: Any, cli: Callable[..., Any]) -> None:
    run, (_, device), names = two_accounts
    result = cli(*_keyctl(run, device, "--json")[3:])
    assert result.exit_code == ExitCode.INVALID_INPUT, result.stderr
    data = json.loads(result.stdout)
    assert sorted(c["name"] for c in data["candidates"]) == sorted(names)
    assert {"name", "display_name", "user_id", "credential_id"} == set(data["candidates"][0])
    assert "choose one with --account NAME or --credential ID" in result.stderr
    chosen = cli(*_keyctl(run, device, "--json", "--account", names[1])[3:])
    assert chosen.exit_code == 0, chosen.stderr
    assert json.loads(chosen.stdout)["user"] == names[1]


def _read_until(fd: int, wanted: bytes, seconds: float = 30) -> bytes:
    seen = b""
    deadline = time.monotonic() + seconds
    while wanted not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"no {wanted!r} on the terminal; it showed {seen!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the terminal closed
            break
        if not chunk:
            break
        seen += chunk
    return seen


def test_on_a_terminal_the_person_chooses(two_accounts: Any) -> None:
    run, (_, device), names = two_accounts
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        _keyctl(run, device),
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=terminal,
        cwd=ROOT,
        env={**os.environ, "TERM": "dumb"},
    )
    os.close(terminal)
    try:
        shown = _read_until(controller, b"Choose an account [1-2]: ").decode()
        listed = [line.split(". ", 1)[1] for line in shown.splitlines() if line.strip()[:2] in ("1.", "2.")]
        second = next(name for name in names if listed[1].startswith(name))
        os.write(controller, b"7\n")  # not a choice: asked again
        _read_until(controller, b"Choose an account [1-2]: ")
        os.write(controller, b"2\n")
        out, _ = process.communicate(timeout=30)
    finally:
        os.close(controller)
        process.kill()
    assert process.returncode == 0
    assert out.decode().splitlines()[0] == f"signed in as {second} with a passkey"


def test_an_unknown_account_on_a_key_whose_accounts_have_no_display_name(
    relying_parties: dict[str, RelyingParty],
) -> None:
    """SimpleWebAuthn's default options leave displayName empty: the accounts still have names, so an
    unknown --account is "not found" with the list, not blamed on a key that has not verified you."""
    run = matrix.Run(relying_parties["simplewebauthn"])
    key = matrix.key()
    names = [matrix.user(), matrix.user()]
    assert all(run.register(key, flows.Request(user=name, resident=True))["verified"] for name in names)
    with pytest.raises(NoCredential) as missing:
        _login(run, key, account="nobody@example.com")
    assert missing.value.message.startswith(
        "Passkey not found on this device for account nobody@example.com at localhost (it has: "
    ), missing.value.message
    assert all(name in missing.value.message for name in names)
