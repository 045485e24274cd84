"""The browser's anti-phishing rules, and proof that a refusal comes before any authenticator I/O."""

from __future__ import annotations

import socket

import pytest

from keyctl.errors import ExitCode, InvalidInput, PhishingRefused
from keyctl.webauthn.origin import check_rp_id, origin_of, require_secure
from tests.webauthn.servers import phishing_app, serve


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://Login.Example.com/path?q=1", "https://login.example.com"),
        ("https://example.com:443/", "https://example.com"),
        ("https://example.com:8443", "https://example.com:8443"),
        ("http://localhost:8765/", "http://localhost:8765"),
        ("http://[::1]:80/", "http://[::1]"),
    ],
)
def test_origin_is_serialised_as_browsers_do(url: str, origin: str) -> None:
    assert origin_of(url) == origin


@pytest.mark.parametrize("url", ["ftp://example.com", "example.com", "https://", "https://x:99999"])
def test_non_http_urls_are_invalid_input(url: str) -> None:
    with pytest.raises(InvalidInput):
        origin_of(url)


def test_https_is_required_except_for_localhost() -> None:
    require_secure("https://example.com")
    require_secure("http://localhost:8000")
    require_secure("http://app.localhost:8000")
    for insecure in ("http://example.com", "http://127.0.0.1:8000"):
        with pytest.raises(PhishingRefused, match="passkeys need https"):
            require_secure(insecure)


@pytest.mark.parametrize(
    ("rp_id", "origin", "allowed"),
    [
        ("login.example.com", "https://login.example.com", True),
        ("example.com", "https://login.example.com", True),  # registrable suffix
        ("com", "https://example.com", False),  # a public suffix
        ("co.uk", "https://shop.co.uk", False),  # a public suffix of two labels
        ("github.io", "https://alice.github.io", False),  # a private-section public suffix
        ("evil.com", "https://login.example.com", False),
        ("ample.com", "https://example.com", False),  # a string suffix, not a domain suffix
        ("localhost", "http://localhost:8765", True),
        ("example.com", "http://example.com", False),  # plain http
    ],
)
def test_rp_id_must_be_the_host_or_a_registrable_suffix(rp_id: str, origin: str, allowed: bool) -> None:
    if allowed:
        assert check_rp_id(rp_id, origin) == rp_id
    else:
        with pytest.raises(PhishingRefused, match="may not use"):
            check_rp_id(rp_id, origin)


def test_missing_rp_id_defaults_to_the_origin_host() -> None:
    assert check_rp_id(None, "https://login.example.com") == "login.example.com"


def test_the_insecure_override_checks_the_host_but_not_the_scheme() -> None:
    assert check_rp_id("corp.example", "http://sso.corp.example:8080", insecure=True) == "corp.example"
    with pytest.raises(PhishingRefused):
        check_rp_id("evil.com", "http://sso.corp.example", insecure=True)
    assert check_rp_id("app.localhost", "http://app.localhost:8080", insecure=True) == "app.localhost"
    with pytest.raises(PhishingRefused):  # a localhost origin does not vouch for another site
        check_rp_id("example.com", "http://app.localhost:8080", insecure=True)


@pytest.mark.parametrize(
    ("command", "extra"), [("register", ["--user", "victim@example.com"]), ("login", [])]
)
def test_a_look_alike_server_is_refused_before_the_authenticator_is_touched(
    cli: object, command: str, extra: list[str]
) -> None:
    # A UDP "authenticator" that only counts what reaches it: nothing may.
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]
    with serve(phishing_app) as server:
        result = cli(  # type: ignore[operator]
            command,
            "--server",
            server.url,
            "--profile",
            "fido-conformance",
            "--authenticator",
            f"udp:127.0.0.1:{port}",
            *extra,
        )
        assert result.exit_code == ExitCode.PHISHING, result.stderr
        assert "asked for passkeys of 'example.com'" in result.stderr
        assert server.state.verified == []
    with pytest.raises(BlockingIOError):
        listener.recv(64)
    listener.close()


def test_plain_http_servers_are_refused_before_any_request(cli: object) -> None:
    result = cli("login", "--server", "http://example.com", "--profile", "simplewebauthn")  # type: ignore[operator]
    assert result.exit_code == ExitCode.PHISHING
    assert "passkeys need https" in result.stderr


def test_origin_override_needs_the_insecure_flag(cli: object) -> None:
    result = cli(  # type: ignore[operator]
        "login",
        "--server",
        "http://localhost:1",
        "--profile",
        "simplewebauthn",
        "--origin",
        "https://example.com",
    )
    assert result.exit_code == ExitCode.INVALID_INPUT
    assert "--origin needs --insecure-origin-override" in result.stderr
