"""Every failure of the catalogue provoked for real, through the keyctl command line, against the
reference server on loopback and a virtual authenticator served over UDP."""

from __future__ import annotations

import copy
import json
import os
import pty
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keyctl.authenticator import Policy, PresenceMode, PresenceRequest, UvMode, VirtualAuthenticator
from keyctl.errors import ExitCode, SessionExpired
from keyctl.hid.inprocess import connect
from keyctl.server import start
from keyctl.webauthn import flows, profile
from keyctl.webauthn.session import Session
from tests.webauthn.conftest import PASSWORD, Reference, authenticator, client, sign_up
from tests.webauthn.servers import free_port, rsa_only_app, serve

Cli = Callable[..., Any]
Serve = Callable[[VirtualAuthenticator], str]


def _jar(reference: Reference, email: str, tmp_path: Path) -> Path:
    """A signed-in account, its session saved as a cookie jar for the CLI."""
    jar = tmp_path / f"{email}.jar"
    with reference.account(email) as session:
        session.save_cookies(jar)
    return jar


def _register(
    cli: Cli, reference: Reference, jar: Path, device: str, *extra: str, user: str = "u@example.com"
) -> Any:
    return cli(
        "register", "--server", reference.url, "--user", user, "--cookie-jar", str(jar),
        "--authenticator", device, *extra,
    )  # fmt: skip


def _login(cli: Cli, reference: Reference, device: str, *extra: str) -> Any:
    return cli("login", "--server", reference.url, "--authenticator", device, *extra)


def _registered(reference: Reference, key: VirtualAuthenticator, email: str = "u@example.com") -> None:
    with reference.account(email) as session:
        flows.register(
            session, client(reference.url, lambda: connect(key)), flows.Request(user=email, resident=True)
        )


def test_deny_is_setup_canceled_and_request_canceled(
    cli: Cli, reference: Reference, udp_authenticator: Serve, tmp_path: Path
) -> None:
    key = authenticator()
    _registered(reference, key)
    refusing = VirtualAuthenticator(key.store, policy=Policy(presence=PresenceMode.DENY))
    device = udp_authenticator(refusing)
    result = _login(cli, reference, device, "--user", "u@example.com")
    assert result.exit_code == ExitCode.PASSKEY_CANCELED, result.stderr
    assert "error: Request canceled" in result.stderr
    jar = _jar(reference, "v@example.com", tmp_path)
    result = _register(cli, reference, jar, device, user="v@example.com")
    assert result.exit_code == ExitCode.PASSKEY_CANCELED, result.stderr
    assert "error: Passkey setup canceled" in result.stderr


def test_nobody_touching_is_a_timeout(cli: Cli, reference: Reference, udp_authenticator: Serve) -> None:
    key = authenticator()
    _registered(reference, key)
    # The key gives up by itself (USER_ACTION_TIMEOUT) ...
    slow = VirtualAuthenticator(
        key.store, policy=Policy(presence=PresenceMode.TIMEOUT, presence_timeout_s=0.2)
    )
    result = _login(cli, reference, udp_authenticator(slow), "--user", "u@example.com")
    assert result.exit_code == ExitCode.TIMEOUT, result.stderr
    assert "Passkey request timed out" in result.stderr
    # ... or keyctl's own --timeout cancels the wait (CTAPHID CANCEL, answered KEEPALIVE_CANCEL).
    never = VirtualAuthenticator(
        key.store,
        policy=Policy(presence=PresenceMode.PROMPT, presence_timeout_s=30, prompter=_never_answers),
    )
    result = _login(cli, reference, udp_authenticator(never), "--user", "u@example.com", "--timeout", "1")
    assert result.exit_code == ExitCode.TIMEOUT, result.stderr
    assert "no touch within 1 s" in result.stderr
    assert "Touch your authenticator" in result.stderr


def _never_answers(request: PresenceRequest) -> bool:
    time.sleep(5)
    return False


def test_a_wrong_pin_says_how_many_attempts_are_left(
    cli: Cli, reference: Reference, udp_authenticator: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = authenticator(Policy(uv=UvMode.NONE), pin_code="123456")
    device = udp_authenticator(key)
    jar = _jar(reference, "u@example.com", tmp_path)
    monkeypatch.setenv("KEY_PIN", "000000")
    result = _register(cli, reference, jar, device, "--pin-env", "KEY_PIN")
    assert result.exit_code == ExitCode.NOT_VERIFIED, result.stderr
    assert "We could not verify you: wrong PIN (7 attempts left" in result.stderr
    assert "000000" not in result.stderr + result.stdout
    monkeypatch.setenv("KEY_PIN", "123456")
    result = _register(cli, reference, jar, device, "--pin-env", "KEY_PIN")
    assert result.exit_code == 0, result.stderr


def test_a_forced_pin_change_is_not_a_wrong_pin(
    cli: Cli, reference: Reference, udp_authenticator: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key refuses the right PIN until it is changed (CTAP 2.1 §6.5.5.7.2: PIN_POLICY_VIOLATION)."""
    key = authenticator(Policy(uv=UvMode.NONE), pin_code="123456")
    with key.store.transaction() as state:
        state.force_pin_change = True  # as authenticatorConfig setMinPINLength with forceChangePin leaves it
    device = udp_authenticator(key)
    jar = _jar(reference, "u@example.com", tmp_path)
    monkeypatch.setenv("KEY_PIN", "123456")
    result = _register(cli, reference, jar, device, "--pin-env", "KEY_PIN")
    assert result.exit_code == ExitCode.NOT_VERIFIED, result.stderr
    assert result.stderr.splitlines() == [
        "error: We could not verify you: the key requires a new PIN before it accepts this one"
        " (a forced PIN change)",
        "  fix: change it: 'keyctl key pin change'",
    ]


def test_the_same_key_twice_is_already_registered(
    cli: Cli, reference: Reference, udp_authenticator: Serve, tmp_path: Path
) -> None:
    device = udp_authenticator(authenticator())
    jar = _jar(reference, "u@example.com", tmp_path)
    assert _register(cli, reference, jar, device).exit_code == 0
    result = _register(cli, reference, jar, device)
    assert result.exit_code == ExitCode.CREDENTIAL_EXCLUDED, result.stderr
    assert "Passkey already registered for this device" in result.stderr


def test_a_sixth_passkey_is_refused(
    cli: Cli, reference: Reference, udp_authenticator: Serve, tmp_path: Path
) -> None:
    jar = _jar(reference, "u@example.com", tmp_path)
    for _ in range(5):
        assert _register(cli, reference, jar, udp_authenticator(authenticator())).exit_code == 0
    result = _register(cli, reference, jar, udp_authenticator(authenticator()))
    assert result.exit_code == ExitCode.PASSKEY_LIMIT, result.stderr
    assert "Passkey limit reached" in result.stderr


def test_an_expired_challenge_is_session_expired(
    cli: Cli, reference: Reference, udp_authenticator: Serve, tmp_path: Path
) -> None:
    def touch_after_six_minutes(request: PresenceRequest) -> bool:
        reference.clock.offset += 6 * 60
        return True

    slow = authenticator(Policy(presence=PresenceMode.PROMPT, prompter=touch_after_six_minutes))
    jar = _jar(reference, "u@example.com", tmp_path)
    result = _register(cli, reference, jar, udp_authenticator(slow))
    assert result.exit_code == ExitCode.SESSION_EXPIRED, result.stderr
    assert "Session expired" in result.stderr


class Recording(Session):
    """A session that remembers what it posted, to replay it."""

    posted: list[tuple[str, Any]]

    def call(self, method: str, path: str, body: Any = None, *args: Any, **kwargs: Any) -> Any:
        self.posted = [*getattr(self, "posted", []), (path, body)]
        return super().call(method, path, body, *args, **kwargs)


def test_a_replayed_assertion_is_session_expired(reference: Reference) -> None:
    key = authenticator()
    _registered(reference, key)
    with Recording(reference.url, reference.session().profile, reference.url) as session:
        flows.login(session, client(reference.url, lambda: connect(key)), flows.Request(user="u@example.com"))
        path, body = session.posted[-1]
        assert path == "/api/passkeys/login/verify"
        with pytest.raises(SessionExpired, match="server answered 401"):
            session.call("POST", path, body, finish=True)


def test_a_cloned_key_with_a_lower_counter_fails_verification(
    cli: Cli, reference: Reference, udp_authenticator: Serve
) -> None:
    key = authenticator()
    _registered(reference, key)
    clone = VirtualAuthenticator(copy.deepcopy(key.store.state))  # type: ignore[attr-defined]
    for _ in range(2):
        assert _login(cli, reference, udp_authenticator(key), "--user", "u@example.com").exit_code == 0
    result = _login(cli, reference, udp_authenticator(clone), "--user", "u@example.com")
    assert result.exit_code == ExitCode.VERIFICATION_FAILED, result.stderr
    assert "Verification failed" in result.stderr


def test_no_passkeys_for_the_account_or_on_the_device(
    cli: Cli, reference: Reference, udp_authenticator: Serve
) -> None:
    reference.server.create_user("none@example.com", PASSWORD)
    empty = udp_authenticator(authenticator())
    result = _login(cli, reference, empty, "--user", "none@example.com")
    assert result.exit_code == ExitCode.NO_CREDENTIAL, result.stderr
    assert "No passkeys available for none@example.com" in result.stderr
    result = _login(cli, reference, empty)
    assert result.exit_code == ExitCode.NO_CREDENTIAL, result.stderr
    assert "Passkey not found on this device" in result.stderr


def test_a_wrong_password_is_sign_in_failed(
    cli: Cli, reference: Reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference.account("u@example.com").close()
    monkeypatch.setenv("PW", "not the password at all")
    result = cli(
        "login", "--server", reference.url, "--user", "u@example.com", "--password-env", "PW",
        "--recovery-code-env", "PW",
    )  # fmt: skip
    assert result.exit_code == ExitCode.SIGN_IN_FAILED, result.stderr
    assert "invalid_credentials" in result.stderr or "Sign-in failed" in result.stderr
    assert "not the password at all" not in result.stderr


def test_a_server_that_is_down_is_passkey_unavailable(cli: Cli) -> None:
    result = cli("login", "--server", f"http://localhost:{free_port()}", "--authenticator", "udp:127.0.0.1:9")
    assert result.exit_code == ExitCode.SERVER_UNAVAILABLE, result.stderr


def test_platform_and_missing_usb_keys(cli: Cli, reference: Reference) -> None:
    key = authenticator()
    _registered(reference, key)
    result = _login(cli, reference, "platform", "--user", "u@example.com")
    assert result.exit_code == ExitCode.NOT_SUPPORTED
    assert "Passkeys not supported on this device" in result.stderr
    result = _login(cli, reference, "/dev/hidraw-none", "--user", "u@example.com")
    assert result.exit_code == ExitCode.NO_DEVICE
    assert "No compatible device found" in result.stderr


def _relay(target: str, claimed_origin: str) -> Callable[[Any], Starlette]:
    """A look-alike host relaying every request to the real server, with the Origin header the real server
    expects, as a phishing proxy does: the real server's options (its rpId) reach keyctl unchanged."""

    async def forward(request: Request) -> Response:
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "origin", "content-length")
        }
        if "origin" in request.headers:
            headers["origin"] = claimed_origin
        async with httpx.AsyncClient() as upstream:
            answer = await upstream.request(
                request.method, target + request.url.path, content=await request.body(), headers=headers
            )
        kept = {k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "set-cookie")}
        return Response(answer.content, status_code=answer.status_code, headers=kept)

    route = Route("/{path:path}", forward, methods=["GET", "POST"])
    return lambda _state: Starlette(routes=[route])


def test_a_server_for_another_site_is_refused_before_the_key_is_touched(cli: Cli, tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.setblocking(False)
    real_origin = "https://login.example.com"
    port = free_port()
    with (
        start(tmp_path / "other.sqlite3", port=port, rp_id="example.com", origin=real_origin) as real,
        serve(_relay(f"http://localhost:{port}", real_origin)) as look_alike,
    ):
        real.create_user("u@example.com", PASSWORD)
        result = cli(
            "login", "--server", look_alike.url, "--user", "u@example.com",
            "--authenticator", f"udp:127.0.0.1:{listener.getsockname()[1]}",
        )  # fmt: skip
    assert result.exit_code == ExitCode.PHISHING, result.stderr
    # keyctl's own rpId check: the relayed options passed the real server's guards.
    assert f"the server at {look_alike.url} asked for passkeys of 'example.com'" in result.stderr
    with pytest.raises(BlockingIOError):
        listener.recv(64)  # nothing reached the authenticator
    listener.close()


def test_the_origin_override_needs_its_flag_and_warns(
    cli: Cli, tmp_path: Path, udp_authenticator: Serve
) -> None:
    # A server that believes it is https://login.example.com, reached on loopback (e.g. behind a proxy).
    claimed = "https://login.example.com"
    key = authenticator()
    port = free_port()
    url = f"http://localhost:{port}"  # ServerHandle.url is the configured origin, not the bound address
    with start(tmp_path / "proxied.sqlite3", port=port, rp_id="example.com", origin=claimed) as server:
        server.create_user("u@example.com", PASSWORD)
        with Session(url, profile.load("keyctl"), claimed) as session:
            sign_up(session, "u@example.com", time.time)
            registered = flows.register(
                session,
                client(claimed, lambda: connect(key), insecure=True),
                flows.Request(user="u@example.com", resident=True),
            )
        refused = cli("login", "--server", url, "--authenticator", udp_authenticator(key))
        result = cli(
            "login", "--server", url, "--authenticator", udp_authenticator(key),
            "--origin", claimed, "--insecure-origin-override", "--json",
        )  # fmt: skip
    assert refused.exit_code == ExitCode.PHISHING, refused.stderr
    assert result.exit_code == 0, result.stderr
    assert f"warning: claiming origin {claimed}" in result.stderr
    assert json.loads(result.stdout)["credential_id"] == registered.credential_id


def test_an_algorithm_the_key_cannot_make_is_not_supported(cli: Cli, udp_authenticator: Serve) -> None:
    with serve(rsa_only_app) as server:
        result = cli(
            "register", "--server", server.url, "--profile", "fido-conformance", "--user", "u@example.com",
            "--authenticator", udp_authenticator(authenticator()),
        )  # fmt: skip
    assert result.exit_code == ExitCode.NOT_SUPPORTED, result.stderr
    assert (
        "Passkeys not supported: the authenticator makes none of the key types the server accepts (RS256)"
        in result.stderr
    )


def test_ctrl_c_while_waiting_for_a_touch_is_canceled(reference: Reference, udp_authenticator: Serve) -> None:
    key = authenticator()
    _registered(reference, key)
    waiting = VirtualAuthenticator(
        key.store, policy=Policy(presence=PresenceMode.PROMPT, presence_timeout_s=30, prompter=_never_answers)
    )
    command = [sys.executable, "-m", "keyctl", "login", "--server", reference.url, "--user", "u@example.com",
               "--authenticator", udp_authenticator(waiting)]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stderr is not None
    assert "Touch your authenticator" in process.stderr.readline()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == ExitCode.PASSKEY_CANCELED, stderr
    assert "error: Request canceled" in stderr


def test_the_touch_prompt_spins_on_a_terminal(reference: Reference, udp_authenticator: Serve) -> None:
    key = authenticator()
    _registered(reference, key)
    waiting = VirtualAuthenticator(
        key.store, policy=Policy(presence=PresenceMode.PROMPT, presence_timeout_s=30, prompter=_never_answers)
    )
    controller, terminal = pty.openpty()
    command = [sys.executable, "-m", "keyctl", "login", "--server", reference.url, "--user", "u@example.com",
               "--authenticator", udp_authenticator(waiting), "--timeout", "2"]  # fmt: skip
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}
    process = subprocess.Popen(command, stdin=terminal, stdout=terminal, stderr=terminal, env=env)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        output += chunk
    process.wait(30)
    os.close(controller)
    text = output.decode(errors="replace")
    assert process.returncode == ExitCode.TIMEOUT, text
    assert "Touch your authenticator to continue" in text
    assert any(frame in text for frame in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"), text  # the spinner, not the plain line
    assert "Passkey request timed out" in text
