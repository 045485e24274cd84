"""Each built-in profile against a real server of its convention (py_webauthn-verified, on loopback),
with the virtual authenticator in-process and over UDP, through the library and the command line."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from keyctl.authenticator import VirtualAuthenticator
from keyctl.errors import ExitCode, NoCredential, VerificationFailed
from keyctl.webauthn import flows, profile
from keyctl.webauthn.session import Session
from tests.webauthn.conftest import Opener, authenticator, client
from tests.webauthn.servers import APPS, Running, State, serve

USERS = {
    "simplewebauthn": "user@localhost",
    "fido2-example": "a_user",
    "fido-conformance": "carol@example.com",
}


@pytest.mark.parametrize("name", sorted(APPS))
def test_register_and_log_in(name: str, transport: Opener) -> None:
    key = authenticator()
    open_device = transport(key)
    with serve(APPS[name]) as server, Session(server.url, profile.load(name), server.url) as session:
        registered = flows.register(session, client(server.url, open_device), flows.Request(user=USERS[name]))
        assert registered.user == USERS[name]
        logged_in = flows.login(session, client(server.url, open_device), flows.Request(user=USERS[name]))
        assert logged_in.credential_id == registered.credential_id
        # The server's own verification (py_webauthn) accepted both.
        assert server.state.verified == [f"register:{USERS[name]}", f"login:{USERS[name]}"]
        assert server.state.credentials[0].sign_count >= 1


def _cli(cli: Callable[..., Any], command: str, server: Running, name: str, device: str, *extra: str) -> Any:
    return cli(
        command, "--server", server.url, "--profile", name, "--authenticator", device, "--user", USERS[name],
        "--json", *extra,
    )  # fmt: skip


@pytest.mark.parametrize("name", sorted(APPS))
def test_the_command_line_with_each_profile(
    name: str, cli: Callable[..., Any], udp_authenticator: Callable[..., str]
) -> None:
    device = udp_authenticator(authenticator())
    with serve(APPS[name]) as server:
        registered = _cli(cli, "register", server, name, device)
        assert registered.exit_code == 0, registered.stderr
        logged_in = _cli(cli, "login", server, name, device)
        assert logged_in.exit_code == 0, logged_in.stderr
    result = json.loads(logged_in.stdout)
    assert result["verified"] is True
    assert result["credential_id"] == json.loads(registered.stdout)["credential_id"]
    assert result["authenticator"] == device
    assert result["server"] in ({"verified": True}, {"status": "OK"}, {"status": "ok", "errorMessage": ""})
    assert server.state.verified[-1] == f"login:{USERS[name]}"


def test_fido2_example_conventions_for_failures(transport: Opener) -> None:
    with (
        serve(APPS["fido2-example"]) as server,
        Session(server.url, profile.load("fido2-example"), server.url) as s,
    ):
        # Nothing registered: the example answers 404 (HTML).
        with pytest.raises(NoCredential, match="server answered 404"):
            flows.login(s, client(server.url, transport(authenticator())), flows.Request())
        key = authenticator()
        flows.register(s, client(server.url, transport(key)), flows.Request(user="a_user"))
        clone = VirtualAuthenticator(copy.deepcopy(key.store.state))  # type: ignore[attr-defined]
        flows.login(s, client(server.url, transport(key)), flows.Request())
        # The clone signs with a counter the server has seen: py_webauthn raises, Flask answers 500.
        with pytest.raises(VerificationFailed, match="server answered 500 without JSON"):
            flows.login(s, client(server.url, transport(clone)), flows.Request())


def test_conformance_unknown_user_is_sign_in_failed(cli: Callable[..., Any]) -> None:
    with serve(APPS["fido-conformance"]) as server:
        result = cli(
            "login", "--server", server.url, "--profile", "fido-conformance", "--user", "nobody@example.com",
            "--authenticator", "udp:127.0.0.1:9",
        )  # fmt: skip
    assert result.exit_code == ExitCode.SIGN_IN_FAILED
    assert "User nobody@example.com does not exist!" in result.stderr


def _csrf_app(state: State) -> Starlette:
    """The conformance convention behind a CSRF guard: the token cookie must come back as a header."""
    inner = APPS["fido-conformance"](state)

    async def guard(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/result"):
            request = Request(scope)
            token = request.cookies.get("csrftoken")
            if not token or request.headers.get("x-csrftoken") != token:
                await JSONResponse({"status": "failed", "errorMessage": "CSRF"}, status_code=403)(
                    scope, receive, send
                )
                return

        async def with_token(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"set-cookie", b"csrftoken=t0k3n; Path=/")]
            await send(message)

        await inner(scope, receive, with_token)

    return guard  # type: ignore[return-value]


def test_a_profile_file_with_a_csrf_header(tmp_path: Path, transport: Opener) -> None:
    builtin = (Path(profile.__file__).parent / "profiles" / "fido-conformance.toml").read_text()
    with_csrf = tmp_path / "csrf.toml"
    csrf = '\n[session]\ncsrf_cookie = "csrftoken"\ncsrf_header = "X-CSRFToken"\n'
    with_csrf.write_text(builtin.replace('name = "fido-conformance"', 'name = "csrf"') + csrf)
    key = authenticator()
    with serve(_csrf_app) as server:
        with Session(server.url, profile.load(str(with_csrf)), server.url) as session:
            done = flows.register(
                session, client(server.url, transport(key)), flows.Request(user="csrf@example.com")
            )
            assert done.verified
        without = Session(server.url, profile.load("fido-conformance"), server.url)
        with without as session, pytest.raises(VerificationFailed, match="server answered 403: CSRF"):
            flows.login(session, client(server.url, transport(key)), flows.Request(user="csrf@example.com"))
    assert server.state.verified == ["register:csrf@example.com"]
