"""The HTTP side against real servers on loopback: refusals mapped, cookie jars curl can use."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from keyctl.errors import ExitCode, NoCredential, ServerUnavailable, SignInFailed
from keyctl.webauthn import profile as profiles
from keyctl.webauthn.session import Session
from tests.webauthn.servers import (
    fido2_example_app,
    fido_conformance_app,
    free_port,
    html_app,
    serve,
    simplewebauthn_app,
)


def test_a_server_that_is_down_is_passkey_unavailable(cli: object) -> None:
    url = f"http://localhost:{free_port()}"
    result = cli("login", "--server", url, "--profile", "simplewebauthn", "--authenticator", "virtual:x")  # type: ignore[operator]
    assert result.exit_code == ExitCode.SERVER_UNAVAILABLE
    assert f"Passkey unavailable: cannot reach {url}" in result.stderr


def test_an_html_answer_is_passkey_unavailable(cli: object) -> None:
    with serve(html_app) as server:
        result = cli(  # type: ignore[operator]
            "login", "--server", server.url, "--profile", "simplewebauthn", "--authenticator", "virtual:x"
        )
    assert result.exit_code == ExitCode.SERVER_UNAVAILABLE
    assert "server answered 200 without JSON" in result.stderr


def test_step_statuses_of_the_profile_are_honoured() -> None:
    # python-fido2's example answers 404 (HTML) to a login when nothing is registered.
    with (
        serve(fido2_example_app) as server,
        Session(server.url, profiles.load("fido2-example"), server.url) as session,
    ):
        step = session.profile.login.begin
        with pytest.raises(NoCredential, match="server answered 404"):
            session.call(step.method, step.path, {}, None, step.status)


def test_a_json_refusal_carries_the_servers_message() -> None:
    with (
        serve(fido_conformance_app) as server,
        Session(server.url, profiles.load("fido-conformance"), server.url) as session,
    ):
        with pytest.raises(SignInFailed, match="server answered 400: User nobody does not exist!"):
            session.call("POST", "/assertion/options", {"username": "nobody"})
        with pytest.raises(ServerUnavailable, match="answered 404 without JSON"):
            session.call("POST", "/no/such/path", {})


def test_the_cookie_jar_is_private_netscape_format_and_curl_reuses_the_session(tmp_path: Path) -> None:
    jar = tmp_path / "jar.txt"
    with serve(simplewebauthn_app) as server:
        with Session(server.url, profiles.load("simplewebauthn"), server.url) as session:
            session.call("GET", "/generate-registration-options")
            sid = session.cookie("connect.sid")
            assert sid is not None
            session.save_cookies(jar)
        assert stat.S_IMODE(jar.stat().st_mode) == 0o600
        assert jar.read_text().startswith("# Netscape HTTP Cookie File\n")
        fields = jar.read_text().splitlines()[-1].split("\t")
        assert fields == ["#HttpOnly_localhost", "FALSE", "/", "FALSE", "0", "connect.sid", sid]
        assert len(server.state.sessions) == 1
        # curl sends the saved cookie back: the server sees the same session, not a new one.
        subprocess.run(
            ["curl", "-sf", "-b", str(jar), f"{server.url}/generate-registration-options"],
            check=True,
            capture_output=True,
        )
        assert len(server.state.sessions) == 1
        # and keyctl reads the jar back (what curl -c writes too).
        with Session(server.url, profiles.load("simplewebauthn"), server.url) as again:
            again.load_cookies(jar)
            assert again.cookie("connect.sid") == sid
            again.call("GET", "/generate-registration-options")
        assert len(server.state.sessions) == 1


def test_a_malformed_cookie_jar_is_invalid_input(tmp_path: Path) -> None:
    jar = tmp_path / "jar.txt"
    jar.write_text("localhost\tFALSE\t/\n")
    session = Session("http://localhost:1", profiles.load("simplewebauthn"), "http://localhost:1")
    with pytest.raises(Exception, match="line 1 is not in Netscape format") as caught:
        session.load_cookies(jar)
    session.close()
    assert caught.value.exit_code == ExitCode.INVALID_INPUT  # type: ignore[attr-defined]
