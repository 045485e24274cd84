"""Options a server sends that are not WebAuthn: keyctl says precisely what is wrong, before the
authenticator is touched (issue #13, "where it is not [legal], keyctl must explain precisely what the
server sent wrong"). The options come from a real server on loopback, through the built-in
``simplewebauthn`` profile; what is legal (null for an absent member, base64url with padding, members
keyctl does not know) goes through to the authenticator."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fido2.ctap import CtapDevice
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from keyctl.errors import ExitCode, ServerUnavailable
from keyctl.webauthn import flows, profile
from keyctl.webauthn.session import Session
from tests.webauthn.conftest import client
from tests.webauthn.servers import Running, State, serve

CREATION: dict[str, Any] = {
    "rp": {"name": "Example", "id": "localhost"},
    "user": {"id": "AQI", "name": "ana", "displayName": ""},
    "challenge": "Y2hhbGxlbmdlY2hhbGxlbmdl",
    "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
    "excludeCredentials": [{"type": "public-key", "id": "AQI"}],
}
REQUEST: dict[str, Any] = {
    "challenge": "Y2hhbGxlbmdlY2hhbGxlbmdl",
    "rpId": "localhost",
    "allowCredentials": [{"type": "public-key", "id": "AQI"}],
}


class Reached(Exception):
    """The flow got as far as opening the authenticator."""


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[Running, dict[str, Any]]]:
    """A server answering whatever options the test puts in ``sent``."""
    sent: dict[str, Any] = {}

    def app(state: State) -> Starlette:
        async def registration(request: Request) -> Response:
            return JSONResponse(sent["creation"])

        async def authentication(request: Request) -> Response:
            return JSONResponse(sent["request"])

        return Starlette(
            routes=[
                Route("/generate-registration-options", registration),
                Route("/generate-authentication-options", authentication),
            ]
        )

    with serve(app) as server:
        yield server, sent


def _changed(options: dict[str, Any], change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    changed = copy.deepcopy(options)
    change(changed)
    return changed


def _ceremony(site: tuple[Running, dict[str, Any]], which: str, options: Any) -> list[bool]:
    """Run register or login against ``options``; True in the list once the authenticator was opened."""
    server, sent = site
    sent["creation" if which == "register" else "request"] = options
    opened: list[bool] = []

    def open_device() -> CtapDevice:
        opened.append(True)
        raise Reached

    ceremony = flows.register if which == "register" else flows.login
    with Session(server.url, profile.load("simplewebauthn"), server.url) as session:
        ceremony(session, client(server.url, open_device), flows.Request(user="ana"))
    return opened


CREATION_FAULTS = [
    (lambda o: o.pop("challenge"), "challenge is missing"),
    (lambda o: o.update(challenge=None), "challenge is missing"),
    (lambda o: o.update(challenge=12345), "challenge is not a base64url string"),
    (lambda o: o.pop("rp"), "rp is missing"),
    (lambda o: o["rp"].pop("name"), "rp.name is missing"),
    (lambda o: o.update(rp="localhost"), "rp is not an object"),
    (lambda o: o.pop("user"), "user is missing"),
    (lambda o: o["user"].pop("id"), "user.id is missing"),
    (lambda o: o["user"].update(id="user #1"), "user.id is not a base64url string"),
    (lambda o: o["user"].update(id=7), "user.id is not a base64url string"),
    (lambda o: o.pop("pubKeyCredParams"), "pubKeyCredParams is missing"),
    (lambda o: o.update(pubKeyCredParams="ES256"), "pubKeyCredParams is not a list"),
    (lambda o: o.update(pubKeyCredParams=["ES256"]), "pubKeyCredParams[0] is not an object"),
    (lambda o: o["pubKeyCredParams"][0].pop("alg"), "pubKeyCredParams[0].alg is missing"),
    (lambda o: o["pubKeyCredParams"][0].update(alg="ES256"), "pubKeyCredParams[0].alg is not an integer"),
    (lambda o: o["pubKeyCredParams"][0].update(alg=True), "pubKeyCredParams[0].alg is not an integer"),
    (lambda o: o["excludeCredentials"][0].pop("id"), "excludeCredentials[0].id is missing"),
    (lambda o: o.update(excludeCredentials={"id": "AQI"}), "excludeCredentials is not a list"),
    # the right shape, but fido2 cannot read a member: its own words
    (lambda o: o.update(timeout="soon"), "ValueError: invalid literal for int() with base 10: 'soon'"),
]


@pytest.mark.parametrize(("change", "problem"), CREATION_FAULTS)
def test_registration_options_that_are_not_webauthn(
    site: tuple[Running, dict[str, Any]], change: Callable[[dict[str, Any]], Any], problem: str
) -> None:
    with pytest.raises(ServerUnavailable) as refused:
        _ceremony(site, "register", _changed(CREATION, change))
    assert refused.value.message == (
        f"Passkey unavailable (the server's registration options are malformed: {problem})"
    )
    assert refused.value.exit_code == ExitCode.SERVER_UNAVAILABLE


REQUEST_FAULTS = [
    (lambda o: o.pop("challenge"), "challenge is missing"),
    (lambda o: o.update(challenge=["c"]), "challenge is not a base64url string"),
    (lambda o: o["allowCredentials"][0].pop("id"), "allowCredentials[0].id is missing"),
    (lambda o: o["allowCredentials"][0].update(id="a b"), "allowCredentials[0].id is not a base64url string"),
    (lambda o: o.update(allowCredentials=[None]), "allowCredentials[0] is not an object"),
]


@pytest.mark.parametrize(("change", "problem"), REQUEST_FAULTS)
def test_login_options_that_are_not_webauthn(
    site: tuple[Running, dict[str, Any]], change: Callable[[dict[str, Any]], Any], problem: str
) -> None:
    with pytest.raises(ServerUnavailable) as refused:
        _ceremony(site, "login", _changed(REQUEST, change))
    assert (
        refused.value.message == f"Passkey unavailable (the server's login options are malformed: {problem})"
    )


@pytest.mark.parametrize("which", ["register", "login"])
def test_options_that_are_not_an_object(site: tuple[Running, dict[str, Any]], which: str) -> None:
    what = "registration" if which == "register" else "login"
    with pytest.raises(ServerUnavailable) as refused:
        _ceremony(site, which, [CREATION if which == "register" else REQUEST])
    assert (
        refused.value.message
        == f"Passkey unavailable (the server's {what} options are malformed: not a JSON object)"
    )


LEGAL_CREATION = [
    lambda o: o.update(excludeCredentials=None),  # null: absent
    lambda o: o.pop("excludeCredentials"),
    lambda o: o["user"].update(id="AQI="),  # padded base64url
    lambda o: o["user"].pop("displayName"),  # python-fido2's Fido2Server leaves it out
    lambda o: o.update(hints=["security-key"], extensions={"credProps": True, "unknownExt": 1}),
    lambda o: o.update(futureMember={"x": 1}),
]


@pytest.mark.parametrize("change", LEGAL_CREATION)
def test_legal_registration_options_reach_the_authenticator(
    site: tuple[Running, dict[str, Any]], change: Callable[[dict[str, Any]], Any]
) -> None:
    with pytest.raises(Reached):
        _ceremony(site, "register", _changed(CREATION, change))


@pytest.mark.parametrize(
    "change", [lambda o: o.update(allowCredentials=None), lambda o: o.pop("allowCredentials")]
)
def test_legal_login_options_reach_the_authenticator(
    site: tuple[Running, dict[str, Any]], change: Callable[[dict[str, Any]], Any]
) -> None:
    with pytest.raises(Reached):
        _ceremony(site, "login", _changed(REQUEST, change))


def test_the_command_says_it_on_one_line(site: tuple[Running, dict[str, Any]], cli: Any) -> None:
    server, sent = site
    sent["creation"] = _changed(CREATION, lambda o: o["user"].update(id="user #1"))
    result = cli(
        "register", "--server", server.url, "--profile", "simplewebauthn", "--user", "ana",
        "--authenticator", "udp:127.0.0.1:9",
    )  # fmt: skip
    assert result.exit_code == ExitCode.SERVER_UNAVAILABLE
    lines = result.stderr.splitlines()
    assert lines[0] == (
        "error: Passkey unavailable (the server's registration options are malformed:"
        " user.id is not a base64url string)"
    )
    assert lines[1:] == [
        "  fix: check that --profile matches this server, else report it to the site's operator"
    ]
